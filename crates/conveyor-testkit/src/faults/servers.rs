//! The private servers a fault case may kill and start again, behind one
//! small trait: Redis, PostgreSQL, NATS and RabbitMQ, each on a free loopback
//! port with its data in a temporary directory.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::nats_cluster::NatsCluster;
use crate::nats_server::TempNats;
use crate::postgres_pair::PostgresPair;
use crate::rabbitmq_cluster::RabbitCluster;
use crate::rabbitmq_server::TempRabbit;
use crate::redis_cluster::RedisCluster;
use crate::redis_sentinels::RedisSentinels;
use crate::servers::{TempPostgres, TempRedis};

/// A server of a test's own that it may stop (SIGKILL, or a fast shutdown)
/// and start again on the same port and data. Blocking calls: run them off
/// the async runtime.
pub trait FaultServer: Send {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Stops it (what it synced survives).
    fn stop(&mut self);
    /// Starts it again and waits until it accepts connections.
    fn start(&mut self);
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A server type whose own calls stop and start it.
macro_rules! fault_server {
    ($server:ty, stop: $stop:ident, start: $start:ident) => {
        impl FaultServer for $server {
            fn addr(&self) -> SocketAddr {
                loopback(self.port())
            }
            fn stop(&mut self) {
                self.$stop();
            }
            fn start(&mut self) {
                self.$start();
            }
        }
    };
}

fault_server!(TempRedis, stop: kill, start: restart);
fault_server!(TempPostgres, stop: stop_server, start: start_server);
fault_server!(TempNats, stop: kill, start: restart);
fault_server!(TempRabbit, stop: kill, start: restart);

/// A store with a standby that takes over when its primary dies: the
/// failover case kills the primary and promotes the standby. Blocking
/// calls: run them off the async runtime.
pub trait FaultCluster: Send {
    /// The URL of a store in the namespace `ns` that names every node, so
    /// a client follows the promotion by itself.
    fn url(&self, ns: &str) -> String;
    /// Kills the primary (SIGKILL or an immediate stop: no goodbye to its
    /// clients, nothing written after).
    fn kill_primary(&mut self);
    /// Promotes the standby and waits until it takes writes.
    fn promote(&mut self);
}

impl FaultCluster for PostgresPair {
    fn url(&self, ns: &str) -> String {
        PostgresPair::url(self, &format!("schema={ns}"))
    }
    fn kill_primary(&mut self) {
        self.primary.stop_server();
    }
    fn promote(&mut self) {
        self.standby.promote();
    }
}

/// Writes wait for one replica (`replicas=1`), so nothing acknowledged is
/// lost with the primary; the sentinels promote a replica by themselves
/// once the primary is down for [`DOWN_AFTER`](crate::redis_sentinels::DOWN_AFTER).
/// The promotion is done once the new primary can confirm writes again:
/// the sentinels agree on it and another replica has synced with it.
impl FaultCluster for RedisSentinels {
    fn url(&self, ns: &str) -> String {
        RedisSentinels::url(self, &format!("prefix={ns}:&replicas=1"))
    }
    fn kill_primary(&mut self) {
        let port = self.primary_port();
        self.server_mut(port).kill();
        self.killed = Some(port);
    }
    fn promote(&mut self) {
        let old = self.killed.unwrap_or_else(|| self.primary_port());
        let new = self.wait_for_promotion(old);
        self.wait_for_replica_of(new);
    }
}

/// The namespace is one hash slot (its prefix's tag); the primary serving
/// it is killed, and the cluster fails its replica over by itself once the
/// primary is silent for [`NODE_TIMEOUT`](crate::redis_cluster::NODE_TIMEOUT).
/// Writes wait for one replica (`replicas=1`), so nothing acknowledged is
/// lost with the primary. The promotion is done once the replica serves the
/// slot and the killed primary, started again, has rejoined as its replica
/// (as an operator brings a failed node back; with one replica per primary,
/// writes that wait for a replica stop until then).
impl FaultCluster for RedisCluster {
    fn url(&self, ns: &str) -> String {
        RedisCluster::url(self, &format!("prefix={{{}}}:{ns}:&replicas=1", self.tag))
    }
    fn kill_primary(&mut self) {
        let port = self.primary_of(&self.tag.clone());
        self.node_mut(port).kill();
        self.killed = Some(port);
    }
    fn promote(&mut self) {
        let Some(old) = self.killed else {
            return;
        };
        let new = self.wait_for_promotion(&self.tag.clone(), old);
        self.node_mut(old).restart();
        self.killed = None;
        self.wait_for_replica_of(new);
    }
}

/// Quorum queues on three nodes; the node leading the namespace's work
/// queue is killed, and the other two elect a new leader by themselves
/// (RAFT): the promotion is done once the queue has one on a live node.
impl FaultCluster for RabbitCluster {
    fn url(&self, ns: &str) -> String {
        *self
            .namespace
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = ns.to_string();
        RabbitCluster::url(self, &(self.query)(ns))
    }
    fn kill_primary(&mut self) {
        let queues = format!(
            "{}.q.",
            self.namespace
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        );
        let leader = self.wait_for_leader(&queues);
        self.nodes[leader].kill();
        self.killed = Some(leader);
    }
    fn promote(&mut self) {
        let queues = format!(
            "{}.q.",
            self.namespace
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        );
        self.wait_for_leader(&queues);
    }
}

/// Every stream kept by all three servers (`replicas=3`); the member
/// leading the ready stream is killed, and the others elect new leaders by
/// themselves (RAFT): the promotion is done once every stream has one.
impl FaultCluster for NatsCluster {
    fn url(&self, ns: &str) -> String {
        NatsCluster::url(self, &format!("prefix={ns}&replicas=3"))
    }
    fn kill_primary(&mut self) {
        self.kill_leader_of("_ready");
    }
    fn promote(&mut self) {
        self.wait_for_new_leaders();
    }
}

/// A server or cluster a case shares with the blocking steps that stop,
/// start or promote it.
pub(super) struct Shared<T: ?Sized>(Arc<Mutex<Box<T>>>);

impl<T: ?Sized + Send + 'static> Shared<T> {
    /// Holds `it`.
    pub(super) fn new(it: Box<T>) -> Self {
        Shared(Arc::new(Mutex::new(it)))
    }

    /// What `f` reads of it now.
    pub(super) fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&**self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` on it off the async runtime (the steps block).
    pub(super) async fn step(&self, f: fn(&mut T)) {
        let it = self.0.clone();
        super::cases::blocking(move || f(&mut **it.lock().unwrap_or_else(PoisonError::into_inner)))
            .await;
    }

    /// Drops it off the async runtime (stopping a server blocks).
    pub(super) async fn drop_off_runtime(self) {
        super::cases::blocking(move || drop(self)).await;
    }
}
