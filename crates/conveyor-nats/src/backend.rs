//! [`NatsBackend`]: the connection, the namespace's streams and ledger, and
//! conveyor's core contract on them (each operation in its own module:
//! `enqueue`, `reserve`, `finish`; the parts in theirs).
//!
//! Time comes from the injected [`Clock`] for every decision a record
//! makes (lease ends, run-at, finish and enqueue times), never from the
//! server, so tests move time by hand. The connection is async-nats's own,
//! which reconnects by itself: while it is down calls fail with
//! [`BackendErrorKind::Unavailable`](conveyor_core::BackendErrorKind), and
//! succeed again once it is back (streams, consumers and the bucket are
//! durable on the server; a consumer the server lost is made again).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use conveyor_core::{
    async_trait, Backend, Capabilities, Clock, Enqueued, Error, Finish, FinishMark, Lease, NewTask,
    ReserveParams, Reserved, ResultStore, SystemClock, TaskId, TaskRecord,
};

use crate::bounds::{within, REQUEST_TIMEOUT};
use crate::error::nats_error;
use crate::ledger::Ledger;
use crate::names::{Names, DEFAULT_PREFIX};
use crate::record::Rec;
use crate::streams::{ConsumerSettings, Outgoing, Streams};
use crate::wakeups::{self, Wakeups};

/// How a [`NatsBackend`] is set up beyond its server address.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The namespace: every stream, bucket, consumer and subject starts with
    /// it (letters, digits, `_`, `-`; default [`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// The consumers' `AckWait`: how long the broker waits before it
    /// redelivers a message whose holder went silent (renewals reset it).
    /// The backstop behind lease recovery; default 30 s.
    pub ack_wait: Duration,
    /// Most unacked messages per queue and priority, across every worker
    /// (JetStream's `MaxAckPending`); default 100 000.
    pub max_ack_pending: i64,
    /// Trust this CA file for `tls://` servers (instead of the system roots).
    pub ca: Option<std::path::PathBuf>,
    /// How many servers of a cluster keep each stream the namespace creates
    /// (JetStream's `num_replicas`: 1, or 3 or 5 on a cluster, so a
    /// stream survives losing a server); default 1. Streams that exist
    /// already keep theirs.
    pub replicas: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_string(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 100_000,
            ca: None,
            replicas: 1,
        }
    }
}

/// A durable task store on NATS JetStream. Cheap to clone (clones share
/// one connection).
#[derive(Clone)]
pub struct NatsBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) names: Names,
    pub(crate) ledger: Ledger,
    pub(crate) streams: Streams,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) wake: Arc<Wakeups>,
    /// The records of the leases this process holds, as last written.
    pub(crate) held: crate::record_cache::RecordCache,
    /// The graphs of the workflows this process settled nodes of.
    pub(crate) graphs: conveyor_core::workflow::Graphs,
    version: String,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackend")
            .field("prefix", &self.inner.names.prefix())
            .field("server", &self.inner.version)
            .finish_non_exhaustive()
    }
}

/// How long to wait before reconnect attempt `attempts` (from 1): at once,
/// then doubling from 10 ms up to [`RECONNECT_DELAY_MAX`]. async-nats's own
/// default doubles up to 4 s, so a server back after an outage of a few
/// seconds could wait that long for its clients; work must resume within
/// 3 s of the server being back.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    (Duration::from_millis(10) * 2u32.pow(doublings)).min(RECONNECT_DELAY_MAX)
}

/// The longest pause between two reconnect attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(500);

/// The oldest server this backend runs on: direct gets (used to read
/// records and scan held messages) came with 2.9.
const MIN_VERSION: (u64, u64) = (2, 9);

/// The oldest server this backend keeps streams of several replicas on:
/// before 2.10, a clustered stream checked a write's expected last
/// sequence of its subject before proposing it, outside consensus, so two
/// compare-and-sets racing on one key could both pass (nats-server issue
/// 4320) and the ledger's updates (a workflow's fan-in, a task's state)
/// could be lost. Measured here: the conformance case
/// `concurrent_finishes_fire_the_body_once` loses settles on a 2.9.10
/// cluster every time, and passes on 2.10.26.
const MIN_REPLICATED_VERSION: (u64, u64) = (2, 10);

/// The error for a replicated namespace on a server older than
/// [`MIN_REPLICATED_VERSION`].
fn replicas_need_newer(url: &str, version: &str, why: &str) -> Error {
    Error::InvalidConfig(format!(
        "the NATS server at {url} runs {version:?}; {why} needs 2.10 or newer (older clustered \
         servers can accept two compare-and-sets racing on one key, and lose one)"
    ))
}

/// `major.minor` of a server version string such as `2.9.10`.
pub(crate) fn version_of(v: &str) -> Option<(u64, u64)> {
    let mut parts = v.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.split('-').next()?.parse().ok()?;
    Some((major, minor))
}

impl NatsBackend {
    /// Connects to `url` (`nats://host:port`) in the default namespace with
    /// the system clock.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, DEFAULT_PREFIX, Arc::new(SystemClock)).await
    }

    /// Connects with every name under `prefix` and time read from `clock`.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let options = NatsOptions {
            prefix: prefix.to_string(),
            ..NatsOptions::default()
        };
        Self::connect_options(url, options, clock).await
    }

    /// Connects with `options`; creates the namespace's streams and bucket
    /// when missing. Fails with [`Error::InvalidConfig`] for a bad prefix,
    /// a server older than 2.9 or one without JetStream, and with
    /// [`Error::Backend`] when the server cannot be reached.
    pub async fn connect_options(
        url: &str,
        options: NatsOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let names = Names::new(&options.prefix)?;
        let wake = Arc::new(Wakeups::default());
        let weak = Arc::downgrade(&wake);
        let mut connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let weak = weak.clone();
                async move {
                    let Some(w) = weak.upgrade() else { return };
                    match event {
                        async_nats::Event::Connected => w.connected(),
                        async_nats::Event::Disconnected => w.disconnected(),
                        _ => {}
                    }
                }
            });
        if let Some(ca) = &options.ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        // Refuse at once, rather than retrying forever, when nothing listens.
        let servers = crate::scheme::servers(url);
        let client = tokio::time::timeout(Duration::from_secs(10), connect.connect(servers))
            .await
            .map_err(|_| {
                Error::backend(
                    conveyor_core::BackendErrorKind::Unavailable,
                    format!("nats connect: no server answered at {url} within 10 s"),
                )
            })?
            .map_err(|e| nats_error("connect", e, async_nats::connection::State::Disconnected))?;
        let version = client.server_info().version;
        match version_of(&version) {
            Some(v) if v >= MIN_VERSION => {}
            _ => {
                return Err(Error::InvalidConfig(format!(
                    "the NATS server at {url} runs {version:?}; conveyor needs 2.9 or newer"
                )))
            }
        }
        if !client.server_info().jetstream {
            return Err(Error::InvalidConfig(format!(
                "the NATS server at {url} has JetStream off (start it with -js)"
            )));
        }
        let mut js = jetstream::new(client.clone());
        // Every JetStream request and publish ack (the ledger's included:
        // its store is made from this context) waits this long at most.
        js.set_timeout(REQUEST_TIMEOUT);
        let settings = ConsumerSettings {
            ack_wait: options.ack_wait,
            max_ack_pending: options.max_ack_pending,
        };
        let old_for_replicas = version_of(&version).is_none_or(|v| v < MIN_REPLICATED_VERSION);
        if options.replicas > 1 && old_for_replicas {
            return Err(replicas_need_newer(url, &version, "replicas= above 1"));
        }
        let ledger = Ledger::open(&js, client.clone(), &names, options.replicas).await?;
        if ledger.replicated() && old_for_replicas {
            return Err(replicas_need_newer(
                url,
                &version,
                "this namespace, whose ledger is kept by several servers,",
            ));
        }
        let streams =
            Streams::open(&js, client.clone(), &names, settings, options.replicas).await?;
        let listener = wakeups::listen(&client, &names, Arc::downgrade(&wake)).await?;
        tracing::debug!(%version, prefix = names.prefix(), "connected to NATS");
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                js,
                names,
                ledger,
                streams,
                clock,
                wake,
                held: crate::record_cache::RecordCache::default(),
                graphs: conveyor_core::workflow::Graphs::default(),
                version,
                listener,
            }),
        })
    }

    /// The namespace's prefix.
    pub fn prefix(&self) -> &str {
        self.inner.names.prefix()
    }

    /// The server's version, as it said when the connection opened.
    pub fn server_version(&self) -> &str {
        &self.inner.version
    }

    /// Deletes the namespace: its two streams and its bucket, with every
    /// task, consumer and entry in them. For tests and tearing down.
    pub async fn destroy(&self) -> Result<(), Error> {
        let n = &self.inner.names;
        // Deleting a big stream takes the server a while: not a request
        // of the worker's path, so not held to its bound.
        let mut js = self.inner.js.clone();
        js.set_timeout(Duration::from_secs(60));
        for stream in [n.ready_stream(), n.sched_stream(), n.bucket_stream()] {
            if let Err(e) = js.delete_stream(&stream).await {
                if !format!("{e:?}").contains("NotFound") && !format!("{e}").contains("not found") {
                    return Err(nats_error("deleting a stream", e, self.state()));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn state(&self) -> async_nats::connection::State {
        self.inner.client.connection_state()
    }

    pub(crate) fn now(&self) -> conveyor_core::Timestamp {
        self.inner.clock.now()
    }

    /// The message that makes `rec` runnable as dispatch `d`: a ready
    /// message when its run-at has come, else a schedule entry.
    pub(crate) fn dispatch_for(&self, rec: &Rec, d: u64, msg_id: bool) -> Outgoing {
        let names = &self.inner.names;
        let (subject, due) = if rec.run_at <= self.now().as_millis() {
            (names.ready_subject(&rec.queue, rec.priority), None)
        } else {
            (
                names.sched_subject(&rec.queue, rec.run_at),
                Some(rec.run_at),
            )
        };
        Outgoing {
            subject,
            queue: rec.queue.clone(),
            priority: rec.priority,
            due,
            id: rec.id,
            dispatch: d,
            msg_id: msg_id.then(|| format!("{}.{}.{d}", names.prefix(), rec.id)),
            copy: None,
        }
    }

    /// Wakes the idle workers of `queues` (one message per queue).
    pub(crate) async fn wake(&self, queues: &[String]) {
        let subjects: std::collections::BTreeSet<String> = queues
            .iter()
            .map(|q| self.inner.names.wake_subject(q))
            .collect();
        for subject in subjects {
            let publish = self.inner.client.publish(subject, bytes::Bytes::new());
            let _ = within("waking workers", REQUEST_TIMEOUT, publish).await;
        }
    }

    /// Tells result waiters that `ids` finished (one message).
    pub(crate) async fn announce(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let text: Vec<String> = ids.iter().map(u64::to_string).collect();
        let subject = self.inner.names.finished_subject();
        let publish = self.inner.client.publish(subject, text.join(",").into());
        let _ = within("announcing finished tasks", REQUEST_TIMEOUT, publish).await;
    }

    /// [`NatsBackend::announce`], then flushed: for a call that is rare and
    /// may be a short-lived process's last (`conveyor cancel`), whose
    /// buffered announcement would otherwise be lost when it exits, and
    /// with it the prompt stop of a cancelled running task.
    pub(crate) async fn announce_now(&self, ids: &[u64]) {
        self.announce(ids).await;
        let flush = self.inner.client.flush();
        let _ = within("announcing finished tasks (flush)", REQUEST_TIMEOUT, flush).await;
    }

    /// Runs `call` within the bounds of the worker's path (`bounds.rs`):
    /// it ends, with a transient error, when the connection drops or stays
    /// down, or when the server does not answer in time.
    pub(crate) async fn guard<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.inner.wake.link.guard(what, call).await
    }
}

/// Runs `futures` together (their requests go out at once): the outputs, in order.
pub(crate) async fn all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    futures_util::future::join_all(futures).await
}

#[async_trait]
impl Backend for NatsBackend {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ordering_keys: false,
            failover: crate::FAILOVER,
            ..Capabilities::ALL
        }
    }

    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        self.guard("enqueue", self.enqueue_tasks(tasks)).await
    }

    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        self.guard("reserve", self.reserve_tasks(params)).await
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        self.guard("renew", self.renew_leases(leases, lease)).await
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        self.guard("finish", self.finish_reports(reports)).await
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        self.inner.wake.board.wait(queues, timeout).await;
        true
    }

    fn reconnects(&self) -> Option<u64> {
        Some(self.inner.wake.board.reconnects())
    }

    conveyor_core::own_parts!(
        result_store,
        inspection,
        administration,
        maintenance,
        registry,
        queue_control,
        workflows,
        schedules
    );
}

#[async_trait]
impl ResultStore for NatsBackend {
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        Ok(self.inner.ledger.get(id.0).await?.map(|(r, _)| r.to_task()))
    }

    async fn finish_mark(&self) -> Option<FinishMark> {
        self.inner.wake.board.finish_mark()
    }

    /// Woken by the ids every finishing call publishes on `<P>.finished`.
    async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) -> bool {
        self.inner
            .wake
            .board
            .wait_finished(id, since, timeout)
            .await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::version_of;

    #[test]
    fn reconnects_come_soon() {
        use super::{reconnect_delay, RECONNECT_DELAY_MAX};
        use std::time::Duration;
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(10));
        assert_eq!(reconnect_delay(3), Duration::from_millis(20));
        assert_eq!(reconnect_delay(1_000_000), RECONNECT_DELAY_MAX);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(version_of("2.9.10"), Some((2, 9)));
        assert_eq!(version_of("v2.12.0-beta.1"), Some((2, 12)));
        assert_eq!(version_of("junk"), None);
        assert!(version_of("2.8.4") < Some((2, 9)));
    }
}
