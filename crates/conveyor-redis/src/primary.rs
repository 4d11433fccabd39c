//! [`Primary`]: the connection every call goes out on, to one server or to
//! the primary the sentinels name, followed through a failover.
//!
//! Underneath is the driver's [`ConnectionManager`], which reconnects to
//! the address it was given, and only to it. With Sentinel
//! (`redis+sentinel://`, see [`crate::sentinel`]) a watcher asks the
//! sentinels which server is the primary: at once when a call fails on the
//! connection (reset, refused, timed out) or is refused with `READONLY` (a
//! demoted primary), and every [`WATCH_EVERY`] besides, so a primary the
//! sentinels replaced while this client could still reach it (a partition)
//! is left within that time. When the answer is another server that says it
//! is a master, calls go there from then on; calls in flight on the old
//! connection finish or fail as they would.
//!
//! With Redis Cluster (`redis+cluster://`, see [`crate::cluster`]) calls
//! go to the primary of the namespace's hash slot, which the driver's
//! cluster connection finds and follows.
//!
//! Writes may also wait for replicas ([`Primary::set_wait`]): the URL's
//! `replicas=N`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use conveyor_core::Error;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};
use tokio::sync::Notify;

use crate::cluster::SlotLink;
use crate::reply::redis_error;
use crate::sentinel::Sentinels;
use crate::RedisTls;

/// How long connecting to the server may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(1);

/// How long one call may wait for its answer.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The longest a write waits for its replicas: well inside the time a
/// call may take to answer, which the wait is part of.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(1500);

/// How often the sentinels are asked for the primary while nothing fails.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The least time between two askings after failures, so a burst of failed
/// calls asks once.
const ASK_AGAIN_AFTER: Duration = Duration::from_millis(100);

/// The connection to the primary. Cheap to clone: clones share it.
#[derive(Clone)]
pub(crate) struct Primary {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Primary");
        match &self.shared.way {
            Way::Server(s) => d
                .field("addr", &s.node().addr)
                .field("sentinel", &s.sentinel.is_some()),
            Way::Cluster(_) => d.field("cluster", &true),
        };
        d.finish_non_exhaustive()
    }
}

/// The server calls go to now.
struct Node {
    /// Its `HOST:PORT` (as the sentinels named it).
    addr: String,
    client: redis::Client,
    conn: ConnectionManager,
}

struct Shared {
    way: Way,
    /// Replicas every write waits for (0: none), and for how long (ms).
    wait_replicas: AtomicU32,
    wait_ms: AtomicU64,
}

/// How calls reach the primary.
enum Way {
    /// One server, or the one the sentinels name.
    Server(Box<Followed>),
    /// The primary of the namespace's slot in a Redis Cluster.
    Cluster(SlotLink),
}

/// The server calls go to, and what follows it through a failover.
struct Followed {
    now: RwLock<Arc<Node>>,
    /// The sentinels to ask, and the TLS files for them and the servers.
    sentinel: Option<(Sentinels, RedisTls)>,
    /// Wakes the watcher when a call failed in a way a failover explains.
    failed: Notify,
    /// Times calls moved to another server.
    switches: AtomicU64,
}

impl Followed {
    fn node(&self) -> Arc<Node> {
        match self.now.read() {
            Ok(n) => n.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A manager for `client`'s server, connected.
async fn manager(client: redis::Client) -> Result<ConnectionManager, Error> {
    // Every call is one short script: an answer later than this means a
    // connection that will not answer (a reset that never arrived, a
    // stalled network), and the call fails as transient so the worker
    // tries again on a fresh connection rather than waiting.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_WITHIN))
        .set_response_timeout(Some(ANSWER_WITHIN))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| redis_error("connect", e))
}

impl Primary {
    /// Connects to the server at `url` (`redis://`, `rediss://`), to the
    /// primary the sentinels of a `redis+sentinel://` URL name (and starts
    /// watching them), or to the cluster of a `redis+cluster://` URL, for
    /// the namespace `prefix`.
    pub(crate) async fn connect(url: &str, tls: &RedisTls, prefix: &str) -> Result<Self, Error> {
        if crate::cluster::is_cluster(url) {
            let link = SlotLink::connect(url, tls, prefix, CONNECT_WITHIN, ANSWER_WITHIN).await?;
            return Ok(Self::over(Way::Cluster(link)));
        }
        let sentinel = if crate::sentinel::is_sentinel(url) {
            Some((Sentinels::parse(url)?, tls.clone()))
        } else {
            None
        };
        let node = match &sentinel {
            Some((s, tls)) => Self::node_of(s, tls, s.primary(tls).await?).await?,
            None => {
                let client = crate::tls::client(url, tls)?;
                Node {
                    addr: client.get_connection_info().addr().to_string(),
                    conn: manager(client.clone()).await?,
                    client,
                }
            }
        };
        let watched = sentinel.is_some();
        let primary = Self::over(Way::Server(Box::new(Followed {
            now: RwLock::new(Arc::new(node)),
            sentinel,
            failed: Notify::new(),
            switches: AtomicU64::new(0),
        })));
        if watched {
            tokio::spawn(watch(Arc::downgrade(&primary.shared)));
        }
        Ok(primary)
    }

    fn over(way: Way) -> Self {
        Self {
            shared: Arc::new(Shared {
                way,
                wait_replicas: AtomicU32::new(0),
                wait_ms: AtomicU64::new(0),
            }),
        }
    }

    /// A connected node for the server at `addr`.
    async fn node_of(s: &Sentinels, tls: &RedisTls, addr: String) -> Result<Node, Error> {
        let client = crate::tls::client(&s.server_url(&addr), tls)?;
        Ok(Node {
            conn: manager(client.clone()).await?,
            client,
            addr,
        })
    }

    /// A client for the server calls go to now (for a connection of its
    /// own, as the pub/sub subscriber needs); in a cluster, the next seed
    /// node (the cluster bus carries every message to every node).
    pub(crate) fn client(&self) -> redis::Client {
        match &self.shared.way {
            Way::Server(s) => s.node().client.clone(),
            Way::Cluster(c) => c.client(),
        }
    }

    /// Times calls moved to another server after the sentinels named it.
    pub(crate) fn switches(&self) -> u64 {
        match &self.shared.way {
            Way::Server(s) => s.switches.load(Ordering::Relaxed),
            Way::Cluster(_) => 0,
        }
    }

    /// Makes every write ([`Primary::wait`]) wait until `replicas` replicas
    /// have it, at most `within`; 0 replicas: no waiting.
    pub(crate) fn set_wait(&self, replicas: u32, within: Duration) {
        let ms = u64::try_from(within.min(MAX_WAIT).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.shared.wait_ms.store(ms, Ordering::Relaxed);
        self.shared.wait_replicas.store(replicas, Ordering::Relaxed);
    }

    /// The replicas a write waits for and for how many milliseconds, if
    /// any.
    pub(crate) fn wait(&self) -> Option<(u32, u64)> {
        let n = self.shared.wait_replicas.load(Ordering::Relaxed);
        (n > 0).then(|| (n, self.shared.wait_ms.load(Ordering::Relaxed)))
    }

    /// Tells the watcher when `e` may mean the primary changed.
    fn noticed(&self, e: &RedisError) {
        if let Way::Server(s) = &self.shared.way {
            if s.sentinel.is_some() && failover_sign(e) {
                s.failed.notify_one();
            }
        }
    }
}

/// Whether `e` is what a call meets when its server died or was demoted.
fn failover_sign(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// Asks the sentinels for the primary after a failed call and every
/// [`WATCH_EVERY`], and moves calls to the server named when it differs,
/// until the connection is dropped.
async fn watch(shared: Weak<Shared>) {
    loop {
        let Some(shared_now) = shared.upgrade() else {
            return;
        };
        let Way::Server(s) = &shared_now.way else {
            return;
        };
        // The wait keeps the connection at most WATCH_EVERY past its drop.
        let _ = tokio::time::timeout(WATCH_EVERY, s.failed.notified()).await;
        if let Err(e) = follow(s).await {
            tracing::warn!(error = %e, "asking the Redis sentinels for the primary failed");
        }
        drop(shared_now);
        tokio::time::sleep(ASK_AGAIN_AFTER).await;
    }
}

/// One asking: moves calls to the primary the sentinels name, if another.
async fn follow(s: &Followed) -> Result<(), Error> {
    let Some((sentinels, tls)) = &s.sentinel else {
        return Ok(());
    };
    let addr = sentinels.primary(tls).await?;
    let old = s.node();
    if addr == old.addr {
        return Ok(());
    }
    let node = Primary::node_of(sentinels, tls, addr).await?;
    tracing::warn!(
        master = %sentinels.master,
        from = %old.addr,
        to = %node.addr,
        "the Redis primary changed; calls go to the new one"
    );
    match s.now.write() {
        Ok(mut now) => *now = Arc::new(node),
        Err(poisoned) => *poisoned.into_inner() = Arc::new(node),
    }
    s.switches.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

impl ConnectionLike for Primary {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let r = match &self.shared.way {
                Way::Server(s) => s.node().conn.clone().req_packed_command(cmd).await,
                Way::Cluster(c) => c.clone().command(cmd).await,
            };
            if let Err(e) = &r {
                self.noticed(e);
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let r = match &self.shared.way {
                Way::Server(s) => {
                    let mut conn = s.node().conn.clone();
                    conn.req_packed_commands(pipeline, offset, count).await
                }
                Way::Cluster(c) => c.clone().pipeline(pipeline, offset, count).await,
            };
            if let Err(e) = &r {
                self.noticed(e);
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        match &self.shared.way {
            Way::Server(s) => s.node().conn.get_db(),
            Way::Cluster(_) => 0,
        }
    }
}
