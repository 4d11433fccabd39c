//! The two streams tasks move through, and the consumers that deliver them.
//!
//! - `<P>_ready`, a **work-queue** stream (a message lives until it is
//!   acked), subjects `<P>.ready.<queue>.<priority>`: one message per
//!   dispatch of a task that may run now, its payload `"<id> <dispatch>"`.
//!   Each (queue, priority) has one shared durable pull consumer; the
//!   unacked message is the broker's side of a lease (its `AckWait` is the
//!   backstop that redelivers what a vanished worker held).
//! - `<P>_sched`, a plain (limits) stream, subjects
//!   `<P>.sched.<queue>.<second>`: one entry per delayed or backed-off task,
//!   in the bucket of the second it is due. Nothing waits on the broker for
//!   them (no `-NAK` delay, which counts against `MaxAckPending` and runs on
//!   the broker's clock): the promoter reads due buckets on conveyor's clock
//!   (see `schedule.rs`).
//!
//! One stream per namespace, not per queue: a queue is born at its first
//! enqueue and must cost no stream (an API call, a store directory and, in
//! a cluster, a Raft group each); subjects keep queues apart and consumers
//! filter by them. Publishes of a batch go out together and their acks are
//! awaited together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::stream::{
    DeleteMessageError, DeleteMessageErrorKind, LastRawMessageErrorKind,
};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;
use bytes::Bytes;
use conveyor_core::{BackendErrorKind, Error};
use futures_util::StreamExt;

use crate::body::{body, parse_body, parse_copy};
use crate::bounds::{within, FETCH_LIMIT, REQUEST_TIMEOUT};

/// How long a consumer just made may take to elect its leader (on a
/// cluster; see [`led`]).
const LEADER_WAIT: Duration = Duration::from_secs(2);
use crate::due::DueHint;
use crate::error::{boxed_error, nats_error};
use crate::ledger::Versioned;
use crate::names::Names;
use crate::priorities::ReadyHint;
use crate::record::Rec;

/// How the consumers are configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumerSettings {
    /// The broker's redelivery backstop.
    pub(crate) ack_wait: Duration,
    /// Most unacked messages per consumer (running tasks of one queue and
    /// priority, across every worker).
    pub(crate) max_ack_pending: i64,
}

/// A message to publish.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) subject: String,
    /// The task's queue and priority.
    pub(crate) queue: String,
    pub(crate) priority: i32,
    /// For a schedule entry, the time (ms) it is due; `None` for a ready
    /// message.
    pub(crate) due: Option<i64>,
    pub(crate) id: u64,
    pub(crate) dispatch: u64,
    /// Deduplicate on this `Nats-Msg-Id` (a publish that may be repeated).
    pub(crate) msg_id: Option<String>,
    /// The record as just created and its revision, encoded, to ride in
    /// the message (see `body.rs`).
    pub(crate) copy: Option<(u64, Bytes)>,
}

/// A ready message as a reserver received it.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) id: u64,
    pub(crate) dispatch: u64,
    /// Its stream sequence.
    pub(crate) seq: u64,
    /// Where to ack it.
    pub(crate) reply: String,
    /// How many times the broker delivered it (1 the first time).
    pub(crate) deliveries: i64,
    /// The record as created, with its revision, if the message carries it.
    pub(crate) copy: Option<Versioned<Rec>>,
}

/// A ready message still in the stream, found by the pending scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) seq: u64,
}

/// Gets or creates the stream `config` describes.
///
/// Openers race: a worker and a `conveyor submit` started together both
/// find no stream and both create it. The server accepts a second create
/// of the same configuration, but any refusal of a create is checked
/// against the stream as it now stands: when one with this name exists,
/// another opener made it and it is used. A 2.9 server also deletes its
/// account's stream directory when the last stream goes, and a create
/// racing with that fails with a server error (500): that is tried again.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    client: &async_nats::Client,
    config: Config,
    what: &str,
) -> Result<Stream, Error> {
    let mut pause = Duration::from_millis(20);
    let mut tries = 0;
    loop {
        tries += 1;
        let e = match js.get_or_create_stream(config.clone()).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        if let Ok(s) = js.get_stream(&config.name).await {
            tracing::debug!(error = %e, "{what}: another opener created the stream");
            return Ok(s);
        }
        if tries > 8 || !format!("{e:?}").contains("code: 500") {
            return Err(nats_error(what, e, client.connection_state()));
        }
        tracing::debug!(error = %e, "{what}: the server failed; trying again");
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// True when deleting a message failed only because it is not there any
/// more (acked, or deleted by another process meanwhile: a harmless race).
/// The server says so in three ways: `no message found` (10057, for a
/// sequence below the stream's first), `stream store EOF` (10057, past its
/// last) and `sequence N not found` (10043, one deleted inside the stream;
/// also what a cluster answers), besides 10037, `no message found`.
pub(crate) fn already_gone(e: &DeleteMessageError) -> bool {
    match e.kind() {
        DeleteMessageErrorKind::JetStream(js) => {
            let code = js.error_code();
            code == ErrorCode::SEQUENCE_NOT_FOUND
                || code == ErrorCode::NO_MESSAGE_FOUND
                || (code == ErrorCode::STREAM_MESSAGE_DELETE_FAILED && {
                    let text = js.to_string();
                    text.contains("no message found") || text.contains("store EOF")
                })
        }
        _ => false,
    }
}

/// `consumer` once it has a leader. On a cluster a consumer answers pull
/// requests through the leader of its own group, which a consumer just made
/// (here or by another process racing this one; a durable one or a scan's
/// ephemeral one) may not have elected yet; a fetch sent then is never
/// answered, or answered "no responders". A single server's consumers lead
/// themselves. Waits at most [`LEADER_WAIT`], then fails as unavailable.
pub(crate) async fn led(
    mut consumer: PullConsumer,
    state: impl Fn() -> async_nats::connection::State,
) -> Result<PullConsumer, Error> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        let leaderless = consumer
            .cached_info()
            .cluster
            .as_ref()
            .is_some_and(|c| c.leader.as_deref().unwrap_or("").is_empty());
        if !leaderless {
            return Ok(consumer);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::backend(
                BackendErrorKind::Unavailable,
                format!(
                    "nats: the consumer {} has no leader yet",
                    consumer.cached_info().name
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let what = "reading a consumer's leader";
        within(what, REQUEST_TIMEOUT, consumer.info())
            .await?
            .map_err(|e| nats_error(what, e, state()))?;
    }
}

/// How a read of a consumer (a fetch, a scan) failed: answered status 503,
/// "no responders", before any message (on a cluster, the server this
/// client talks to may not have heard yet that another one serves a
/// consumer just made: ask again), or otherwise.
pub(crate) enum Failed {
    Unserved(Error),
    Other(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Other(e)
    }
}

impl Failed {
    /// The error, whichever way it failed.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failed::Unserved(e) | Failed::Other(e) => e,
        }
    }
}

/// Whether a fetch's error is the status "503, no responders". The
/// driver's fetch ends on a status it does not expect with an I/O error
/// whose text is `error while processing messages from the stream: STATUS,
/// DESCRIPTION`: the status is read from there, whole, not searched for.
fn says_no_responders(e: &(dyn std::error::Error + Send + Sync)) -> bool {
    let text = e.to_string();
    let status = text
        .strip_prefix("error while processing messages from the stream: ")
        .and_then(|rest| rest.split(',').next());
    status == Some(async_nats::StatusCode::NO_RESPONDERS.to_string().as_str())
}

/// How many times a read answered "no responders" is asked again, and how
/// long apart.
pub(crate) const NO_RESPONDERS_TRIES: usize = 25;
pub(crate) const NO_RESPONDERS_PAUSE: Duration = Duration::from_millis(20);

/// The streams, their consumers and the connection.
pub(crate) struct Streams {
    js: jetstream::Context,
    client: async_nats::Client,
    names: Names,
    pub(crate) ready: Stream,
    pub(crate) sched: Stream,
    settings: ConsumerSettings,
    consumers: Mutex<HashMap<String, PullConsumer>>,
    /// The connection's reconnect count when `consumers` was last trusted.
    generation: AtomicU64,
    /// When a reserve must list the schedule (see `due.rs`).
    pub(crate) due: DueHint,
    /// When a reserve may skip the ready listing (see `priorities.rs`).
    pub(crate) priorities: ReadyHint,
}

impl Streams {
    /// Opens (creating when missing) the namespace's two streams.
    pub(crate) async fn open(
        js: &jetstream::Context,
        client: async_nats::Client,
        names: &Names,
        settings: ConsumerSettings,
        replicas: usize,
    ) -> Result<Streams, Error> {
        let ready = Config {
            name: names.ready_stream(),
            subjects: vec![names.ready_all()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            allow_direct: true,
            duplicate_window: Duration::from_secs(120),
            description: Some("conveyor ready tasks".into()),
            num_replicas: replicas,
            ..Default::default()
        };
        let sched = Config {
            name: names.sched_stream(),
            subjects: vec![names.sched_all()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            allow_direct: true,
            duplicate_window: Duration::from_secs(120),
            description: Some("conveyor scheduled tasks".into()),
            num_replicas: replicas,
            ..Default::default()
        };
        let ready = ensure_stream(js, &client, ready, "opening the ready stream").await?;
        let sched = ensure_stream(js, &client, sched, "opening the schedule stream").await?;
        Ok(Streams {
            js: js.clone(),
            client,
            names: names.clone(),
            ready,
            sched,
            settings,
            consumers: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            due: DueHint::default(),
            priorities: ReadyHint::default(),
        })
    }

    fn state(&self) -> async_nats::connection::State {
        self.client.connection_state()
    }

    /// Publishes every message, awaiting the acks together; the stream
    /// sequence of each, in order. Once the publishes are over (whether or
    /// not they succeeded), the due time of every schedule entry is noted
    /// in [`Streams::due`], and the priority of every ready message in
    /// [`Streams::priorities`]: after, so a listing that begins later finds
    /// the message on the server.
    pub(crate) async fn publish(&self, out: &[Outgoing]) -> Result<Vec<u64>, Error> {
        let seqs = self.publish_all(out).await;
        for m in out {
            match m.due {
                Some(due) => self.due.note(&m.queue, due),
                None => self.priorities.note(&m.queue, m.priority),
            }
        }
        seqs
    }

    async fn publish_all(&self, out: &[Outgoing]) -> Result<Vec<u64>, Error> {
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(out.len());
        for m in out {
            let mut headers = HeaderMap::new();
            if let Some(id) = &m.msg_id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            let ack = self
                .js
                .publish_with_headers(
                    m.subject.clone(),
                    headers,
                    body(m.id, m.dispatch, m.copy.as_ref()),
                )
                .await
                .map_err(|e| nats_error("publishing", e, self.state()))?;
            acks.push(ack);
        }
        let mut seqs = Vec::with_capacity(acks.len());
        let acks: Vec<_> = acks
            .into_iter()
            .map(std::future::IntoFuture::into_future)
            .collect();
        for r in futures_util::future::join_all(acks).await {
            seqs.push(
                r.map_err(|e| nats_error("publishing (ack)", e, self.state()))?
                    .sequence,
            );
        }
        Ok(seqs)
    }

    /// The consumer of `queue`'s messages of `priority`, created when missing.
    async fn consumer(&self, queue: &str, priority: i32) -> Result<PullConsumer, Error> {
        let name = self.names.consumer(queue, priority);
        if let Some(c) = self
            .consumers
            .lock()
            .ok()
            .and_then(|m| m.get(&name).cloned())
        {
            return Ok(c);
        }
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: self.names.ready_subject(queue, priority),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            max_deliver: -1,
            max_ack_pending: self.settings.max_ack_pending,
            ..Default::default()
        };
        let consumer = match self.ready.create_consumer(config).await {
            Ok(c) => c,
            // Made meanwhile by another process, maybe with other settings.
            Err(create) => self
                .ready
                .get_consumer(&name)
                .await
                .map_err(|_| nats_error("creating a consumer", create, self.state()))?,
        };
        let consumer = led(consumer, || self.state()).await?;
        if let Ok(mut m) = self.consumers.lock() {
            m.insert(name, consumer.clone());
        }
        Ok(consumer)
    }

    /// Whether the ready stream is kept by several servers (so its
    /// consumers' leaders may lag its writes).
    pub(crate) fn replicated(&self) -> bool {
        self.ready.cached_info().config.num_replicas > 1
    }

    /// Whether the consumer of `queue` at `priority` knows of fewer
    /// messages (not yet delivered, or delivered and not acked) than the
    /// `listed` ones the stream's leader counted on its subject: its
    /// leader's copy of the stream has yet to apply the latest writes.
    pub(crate) async fn lagging(
        &self,
        queue: &str,
        priority: i32,
        listed: usize,
    ) -> Result<bool, Error> {
        let what = "reading a consumer's position";
        let mut consumer = self.consumer(queue, priority).await?;
        let info = within(what, REQUEST_TIMEOUT, consumer.info())
            .await?
            .map_err(|e| nats_error(what, e, self.state()))?;
        let known = info.num_pending.saturating_add(info.num_ack_pending as u64);
        Ok((listed as u64) > known)
    }

    /// Forgets the consumers this process knows (after the server lost
    /// them, they are made again at the next fetch).
    pub(crate) fn forget_consumers(&self) {
        if let Ok(mut m) = self.consumers.lock() {
            m.clear();
        }
    }

    /// Up to `max` messages of `queue` and `priority` that the consumer can
    /// hand out now, without waiting for more.
    ///
    /// `generation` counts the connection's reconnects: when it moved
    /// since the last fetch, the consumers this process knows are looked up
    /// (and made, if the server lost them) again. The server answers the
    /// pull request at once (`no_wait`; why no `expires`: `bounds.rs`), and
    /// the wait for its answer ends after [`FETCH_LIMIT`] even if the
    /// server never sends it (a request lost in a restart): what arrived by
    /// then is returned, and anything the server delivered afterwards comes
    /// back after `AckWait`.
    pub(crate) async fn fetch(
        &self,
        queue: &str,
        priority: i32,
        max: usize,
        generation: u64,
    ) -> Result<Vec<Delivery>, Error> {
        let mut tries = 0;
        loop {
            match self.fetch_once(queue, priority, max, generation).await {
                Ok(got) => return Ok(got),
                Err(Failed::Unserved(e)) if tries < NO_RESPONDERS_TRIES => {
                    tracing::debug!(error = %e, "no server serves the consumer yet; fetching again");
                    tries += 1;
                    tokio::time::sleep(NO_RESPONDERS_PAUSE).await;
                }
                Err(failed) => return Err(failed.into_error()),
            }
        }
    }

    /// One [`Streams::fetch`].
    async fn fetch_once(
        &self,
        queue: &str,
        priority: i32,
        max: usize,
        generation: u64,
    ) -> Result<Vec<Delivery>, Failed> {
        let what = "fetching ready messages";
        if self.generation.swap(generation, Ordering::AcqRel) != generation {
            self.forget_consumers();
        }
        let consumer = self.consumer(queue, priority).await?;
        let deadline = tokio::time::Instant::now() + FETCH_LIMIT;
        let request = consumer.fetch().max_messages(max).messages();
        let batch = tokio::time::timeout_at(deadline, request)
            .await
            .map_err(|_| self.silent(what))?
            .map_err(|e| {
                self.forget_consumers();
                nats_error(what, e, self.state())
            })?;
        let mut batch = std::pin::pin!(batch);
        let mut out = Vec::new();
        loop {
            let m = match tokio::time::timeout_at(deadline, batch.next()).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                // The server never ended the fetch: keep what came.
                Err(_) if !out.is_empty() => break,
                Err(_) => return Err(self.silent(what).into()),
            };
            // A status that ends the fetch (the consumer gone, no one
            // serving it): look the consumers up again next time.
            let m = match m {
                Ok(m) => m,
                // On a cluster the server this client talks to may not have
                // heard yet that another one serves a consumer just made,
                // and answers "503, no responders": `fetch` asks again.
                Err(e) if out.is_empty() && says_no_responders(&*e) => {
                    return Err(Failed::Unserved(Error::backend(
                        BackendErrorKind::Unavailable,
                        format!("nats {what}: no server serves the consumer yet ({e})"),
                    )));
                }
                Err(e) => {
                    self.forget_consumers();
                    return Err(Failed::Other(boxed_error(what, e, self.state())));
                }
            };
            let reply = m.reply.as_ref().map(|r| r.to_string()).unwrap_or_default();
            let info = m.info().map(|i| (i.stream_sequence, i.delivered)).ok();
            match (parse_body(&m.payload), info) {
                (Some((id, dispatch)), Some((seq, deliveries))) => out.push(Delivery {
                    id,
                    dispatch,
                    seq,
                    reply,
                    deliveries,
                    copy: parse_copy(&m.payload).filter(|(rec, _)| rec.id == id),
                }),
                _ => {
                    tracing::warn!(subject = %m.subject, "dropping a foreign message");
                    self.ack(&reply).await;
                }
            }
        }
        Ok(out)
    }

    /// The server did not answer `what` in time.
    fn silent(&self, what: &str) -> Error {
        let kind = match self.state() {
            async_nats::connection::State::Connected => BackendErrorKind::Timeout,
            _ => BackendErrorKind::Unavailable,
        };
        Error::backend(
            kind,
            format!("nats {what}: no answer within {FETCH_LIMIT:?}"),
        )
    }

    async fn send(&self, reply: &str, body: &'static str) {
        if reply.is_empty() {
            return;
        }
        let publish = self
            .client
            .publish(reply.to_string(), Bytes::from_static(body.as_bytes()));
        match within("acking", REQUEST_TIMEOUT, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "an ack was not sent"),
            Err(e) => tracing::debug!(error = %e, "an ack was not sent"),
        }
    }

    /// Acks a delivery (the work-queue stream drops the message).
    pub(crate) async fn ack(&self, reply: &str) {
        self.send(reply, "+ACK").await;
    }

    /// Tells the broker a held message is still being worked on (its
    /// `AckWait` starts again).
    pub(crate) async fn progress(&self, reply: &str) {
        self.send(reply, "+WPI").await;
    }

    /// Hands a delivery back, to come again after `delay` at the earliest.
    pub(crate) async fn nak(&self, reply: &str, delay: Duration) {
        if reply.is_empty() {
            return;
        }
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let body = format!("-NAK {{\"delay\": {nanos}}}");
        let publish = self.client.publish(reply.to_string(), body.into());
        match within("handing a message back", REQUEST_TIMEOUT, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "a nak was not sent"),
            Err(e) => tracing::debug!(error = %e, "a nak was not sent"),
        }
    }

    /// Sends what acks are buffered.
    pub(crate) async fn flush(&self) {
        match within("flushing acks", REQUEST_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "flushing acks failed"),
            Err(e) => tracing::debug!(error = %e, "flushing acks failed"),
        }
    }

    /// Deletes ready message `seq` (one a dead lease held); false when it
    /// was gone already (see [`already_gone`]).
    pub(crate) async fn delete_ready(&self, seq: u64) -> Result<bool, Error> {
        match self.ready.delete_message(seq).await {
            Ok(done) => Ok(done),
            Err(e) if already_gone(&e) => Ok(false),
            Err(e) => Err(nats_error("deleting a ready message", e, self.state())),
        }
    }

    /// Messages per subject of a stream, under `filter`.
    pub(crate) async fn subjects(
        &self,
        stream: &Stream,
        filter: &str,
    ) -> Result<Vec<(String, usize)>, Error> {
        let what = "reading stream subjects";
        let info = stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| nats_error(what, e, self.state()))?;
        let mut info = std::pin::pin!(info);
        let mut out = Vec::new();
        while let Some(item) = info.next().await {
            out.push(item.map_err(|e| nats_error(what, e, self.state()))?);
        }
        Ok(out)
    }

    /// Every ready message some consumer delivered and nobody acked yet:
    /// what running tasks (and dead workers) hold. Reads the stream between
    /// each consumer's ack floor and its last delivery, so it costs one
    /// request per held message, not per message in the stream.
    pub(crate) async fn held(&self) -> Result<Vec<Pending>, Error> {
        let what = "listing held messages";
        let mut out = Vec::new();
        let consumers = self.ready.consumers();
        let mut consumers = std::pin::pin!(consumers);
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| nats_error(what, e, self.state()))?;
            if info.num_ack_pending == 0 {
                continue;
            }
            let last = info.delivered.stream_sequence;
            let mut next = info.ack_floor.stream_sequence + 1;
            while next <= last {
                let subject = info.config.filter_subject.clone();
                let found =
                    if self.replicated() {
                        // A replica answering a direct get may not have the
                        // message yet: ask the stream's leader.
                        match self
                            .ready
                            .raw_message_builder()
                            .next_by_subject(subject)
                            .sequence(next)
                            .send()
                            .await
                        {
                            Ok(m) => Some(m),
                            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => None,
                            Err(e) => return Err(nats_error(what, e, self.state())),
                        }
                    } else {
                        match self.ready.direct_get_next_for_subject(subject, Some(next)).await {
                        Ok(m) => Some(m),
                        Err(e)
                            if e.kind()
                                == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                        {
                            None
                        }
                        Err(e) => return Err(nats_error(what, e, self.state())),
                    }
                    };
                let Some(m) = found else { break };
                if m.sequence > last {
                    break;
                }
                if let Some((id, _)) = parse_body(&m.payload) {
                    out.push(Pending {
                        id,
                        seq: m.sequence,
                    });
                }
                next = m.sequence + 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod no_responders_tests {
    use super::says_no_responders;

    #[test]
    fn the_status_is_read_whole() {
        let said = |text: &str| says_no_responders(&std::io::Error::other(text.to_string()));
        assert!(said(
            "error while processing messages from the stream: 503, None"
        ));
        assert!(said(
            "error while processing messages from the stream: 503, Some(\"No Responders\")"
        ));
        assert!(!said(
            "error while processing messages from the stream: 409, Some(\"503\")"
        ));
        assert!(!said("connection error 503"));
    }
}
