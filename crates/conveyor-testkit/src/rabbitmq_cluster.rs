//! Three RabbitMQ nodes in one cluster, of the test's own on free loopback
//! ports: what the cluster tests run on, and kill a queue's leader of.
//!
//! The nodes find each other by classic peer discovery and share an Erlang
//! cookie; each has its own data, logs and `HOME` under a temporary
//! directory (see [`TempRabbit`]).

use std::time::{Duration, Instant};

use crate::rabbitmq_server::TempRabbit;
use crate::servers::free_port;
use crate::shared_store::SharedStore;

/// How long forming the cluster, or electing a queue's new leader, may
/// take.
const WITHIN: Duration = Duration::from_secs(90);

/// Three clustered nodes.
#[derive(Debug)]
pub struct RabbitCluster {
    /// The nodes, in the order they were started (the first formed the
    /// cluster).
    pub nodes: Vec<TempRabbit>,
    /// The node [`FaultCluster::kill_primary`] killed, by index.
    ///
    /// [`FaultCluster::kill_primary`]: crate::faults::FaultCluster::kill_primary
    pub killed: Option<usize>,
    /// The URL query of a fault case's namespace (`prefix=NS` unless a test
    /// adds more, such as the store beside the broker).
    pub query: fn(&str) -> String,
    /// The namespace of the last URL [`FaultCluster::url`] made, whose
    /// queue's leader is killed.
    ///
    /// [`FaultCluster::url`]: crate::faults::FaultCluster::url
    pub namespace: std::sync::Mutex<String>,
}

impl RabbitCluster {
    /// Starts three nodes one after the other, each joining the first, and
    /// waits until every node runs in the cluster.
    pub fn start() -> RabbitCluster {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let peers: Vec<String> = ports
            .iter()
            .map(|(p, _)| TempRabbit::node_name(*p))
            .collect();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let cookie = format!("CONVEYORTEST{:X}{:X}", std::process::id(), nanos);
        let nodes = ports
            .iter()
            .map(|(p, d)| TempRabbit::start_clustered(*p, *d, &peers, &cookie))
            .collect();
        let cluster = RabbitCluster {
            nodes,
            killed: None,
            query: |ns| format!("prefix={ns}"),
            namespace: Default::default(),
        };
        cluster.wait_until_whole();
        cluster
    }

    /// An `amqp://` URL naming the three nodes, with `query` (without its
    /// `?`) appended.
    pub fn url(&self, query: &str) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut url = format!("amqp://guest:guest@{}/%2f", hosts.join(","));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The nodes not killed, by index.
    fn live(&self) -> impl Iterator<Item = (usize, &TempRabbit)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.killed)
    }

    /// The index of the node leading the first quorum queue whose name
    /// starts with `prefix`, as a live node sees it; `None` while there is
    /// no such queue or it has no leader.
    pub fn leader_of(&self, prefix: &str) -> Option<usize> {
        let (_, node) = self.live().next()?;
        let said = node
            .ctl(&[
                "list_queues",
                "--online",
                "--timeout",
                "5",
                "name",
                "leader",
                "--quiet",
                "--no-table-headers",
            ])
            .ok()?;
        let leader = said.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let leader = f.next()?;
            name.starts_with(prefix).then(|| leader.to_string())
        })?;
        self.nodes
            .iter()
            .position(|n| TempRabbit::node_name(n.port()) == leader)
    }

    /// Waits until the first queue under `prefix` has a leader on a live
    /// node (blocking; panics after 90 s). Returns its index.
    pub fn wait_for_leader(&self, prefix: &str) -> usize {
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Some(i) = self.leader_of(prefix).filter(|i| Some(*i) != self.killed) {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no live node leads a queue under {prefix:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node says the three run in one cluster.
    fn wait_until_whole(&self) {
        let deadline = Instant::now() + WITHIN;
        for (_, node) in self.live() {
            loop {
                let said = node
                    .ctl(&["cluster_status", "--formatter", "json"])
                    .unwrap_or_default();
                let running = self
                    .nodes
                    .iter()
                    .filter(|n| said.contains(&TempRabbit::node_name(n.port())))
                    .count();
                if said.contains("\"running_nodes\"") && running == self.nodes.len() {
                    let v: serde_json::Value = serde_json::from_str(&said).unwrap_or_default();
                    let up = v["running_nodes"].as_array().map_or(0, Vec::len);
                    if up == self.nodes.len() {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "the RabbitMQ cluster did not form: {said}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The URL ([`RabbitCluster::url`], with `query`) of the cluster a test
/// binary shares, started on first use, stopped when the binary exits
/// (blocking: call it off the async runtime).
pub fn shared_url(query: &str) -> String {
    static SHARED: SharedStore<RabbitCluster> = SharedStore::new();
    extern "C" fn stop() {
        SHARED.stop(|c| c.nodes.clear());
    }
    SHARED.with(RabbitCluster::start, stop, |c| c.url(query))
}
