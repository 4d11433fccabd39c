//! A result store beside the broker: RabbitMQ keeps messages, not records, so
//! (as Celery separates its broker from its result backend) the URL may name
//! a Redis that keeps one record per task: `amqp://…?results=redis://HOST/DB`.
//!
//! Each record is a hash `P:result:ID` written by the process that did the
//! step: at enqueue (available or scheduled) and reserve (running), and at
//! each report (retrying, completed with its result, dead, cancelled),
//! follow-ups included. One pipeline per batch, whatever
//! its size. Finished records expire after the retention (24 hours; dead ones
//! after 7 days), unfinished ones a week after they are due. Every batch of
//! finishes is published once on `P:results:finished`, which feeds a
//! [`FinishBoard`], so `wait()` is woken instead of polling.
//!
//! A report's record is written just before its commit, the others after
//! their broker step. A commit once sent is applied whenever it reaches the
//! broker, even after its worker gave up on it or died, and a record
//! written after it would then never be: the task done, its record running
//! for good. Written first, a report's record is at most one step ahead
//! until the task's next step: when its commit never applies, the delivery
//! comes back and the next reservation writes the record again. A worker
//! that dies between a reservation and its record leaves the record one
//! step behind until the task's next step. A task the broker dead-letters
//! on its own (`delivery_limit`) keeps its last record.
//!
//! It keeps no attempt history ([`TaskRecord::history`] stays empty, and
//! the backend's `Capabilities::history` is unset): a record can lag its
//! broker step, and a killed worker's delivery comes back from the broker
//! with nothing telling which attempt's lease ran out, so a history here
//! would guess.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conveyor_core::{
    async_trait, BackendError, BackendErrorKind, Error, FinishBoard, FinishMark, ResultStore,
    Retention, TaskId, TaskRecord, TaskState, Timestamp, TraceContext,
};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::message::TaskMessage;

/// The Redis side: records and the finish channel.
pub(crate) struct Results {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    retention: Retention,
    board: Arc<FinishBoard>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn redis_error(what: &str, e: redis::RedisError) -> Error {
    let kind = if e.is_timeout() {
        BackendErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        BackendErrorKind::Unavailable
    } else {
        BackendErrorKind::Other
    };
    Error::Backend(BackendError::new(kind, format!("redis results: {what}")).with_source(e))
}

impl Results {
    /// Connects to the Redis at `url`; records go under `prefix`.
    pub(crate) async fn connect(
        url: &str,
        prefix: &str,
        retention: Retention,
    ) -> Result<Results, Error> {
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            return Err(Error::InvalidConfig(format!(
                "results= takes a redis:// or rediss:// URL (where task records are kept), not {url:?}"
            )));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(url)
            .map_err(|e| Error::InvalidConfig(format!("bad results URL {url:?}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| redis_error("connect", e))?;
        Ok(Results {
            conn,
            client,
            prefix: prefix.to_string(),
            retention,
            board: Arc::new(FinishBoard::new()),
            listener: Mutex::new(None),
        })
    }

    fn key(&self, id: TaskId) -> String {
        format!("{}:result:{}", self.prefix, id.0)
    }

    fn channel(&self) -> String {
        format!("{}:results:finished", self.prefix)
    }

    /// How long a record in `state` is kept from `now`.
    fn keep(&self, record: &TaskRecord, now: Timestamp) -> u64 {
        let after = match record.state {
            TaskState::Dead => self.retention.dead,
            s if s.is_finished() => self.retention.finished,
            _ => {
                let wait =
                    Duration::from_millis(u64::try_from(record.run_at.0 - now.0).unwrap_or(0));
                self.retention.dead + wait
            }
        };
        after.as_secs().max(1)
    }

    /// Writes `records` in one pipeline; publishes the finished ones' ids.
    pub(crate) async fn put(&self, records: &[TaskRecord], now: Timestamp) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut finished = Vec::new();
        for r in records {
            let key = self.key(r.id);
            pipe.del(&key).ignore();
            pipe.hset_multiple(&key, &fields(r)).ignore();
            pipe.expire(&key, i64::try_from(self.keep(r, now)).unwrap_or(i64::MAX))
                .ignore();
            if r.state.is_finished() {
                finished.push(r.id.0.to_string());
            }
        }
        if !finished.is_empty() {
            pipe.publish(self.channel(), finished.join(",")).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| redis_error("write", e))
    }

    /// Removes records (of tasks whose enqueue failed).
    pub(crate) async fn forget(&self, ids: &[TaskId]) {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.del(self.key(*id)).ignore();
        }
        let mut conn = self.conn.clone();
        let _ = pipe.query_async::<()>(&mut conn).await;
    }

    /// Deletes every record under the prefix (retiring a namespace).
    pub(crate) async fn clear(&self) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:result:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error("scan", e))?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| redis_error("delete", e))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Starts the finish listener once.
    fn listen(&self) {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.is_some() {
            return;
        }
        let task = tokio::spawn(listen(
            self.client.clone(),
            self.channel(),
            Arc::downgrade(&self.board),
        ));
        *listener = Some(task);
    }
}

impl Drop for Results {
    fn drop(&mut self) {
        if let Some(t) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// Follows the finish channel, posting ids to the board; after every
/// (re)subscription "something finished" (what came meanwhile was missed).
async fn listen(client: redis::Client, channel: String, board: Weak<FinishBoard>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await {
            if pubsub.subscribe(&channel).await.is_ok() {
                backoff = Duration::from_millis(100);
                match board.upgrade() {
                    Some(b) => b.post_any(),
                    None => return,
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(b) = board.upgrade() else { return };
                    b.post_payload(std::str::from_utf8(msg.get_payload_bytes()).unwrap_or(""));
                }
            }
        }
        match board.upgrade() {
            Some(b) => b.post_any(),
            None => return,
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn fields(r: &TaskRecord) -> Vec<(&'static str, Vec<u8>)> {
    let n = |v: i64| v.to_string().into_bytes();
    let mut f = vec![
        ("queue", r.queue.clone().into_bytes()),
        ("handler", r.handler.clone().into_bytes()),
        ("state", r.state.as_str().as_bytes().to_vec()),
        ("payload", r.payload.clone()),
        ("attempts", n(r.attempts.into())),
        ("max_attempts", n(r.max_attempts.into())),
        ("run_at", n(r.run_at.0)),
        ("created_at", n(r.created_at.0)),
    ];
    if let Some(v) = &r.result {
        f.push(("result", v.clone()));
    }
    if let Some(e) = &r.error {
        f.push(("error", e.clone().into_bytes()));
    }
    if let Some(t) = r.finished_at {
        f.push(("finished_at", n(t.0)));
    }
    if let Some(t) = &r.trace {
        f.push(("trace", t.encode().into_bytes()));
    }
    f
}

fn parse(id: TaskId, mut h: HashMap<String, Vec<u8>>) -> Result<TaskRecord, Error> {
    let bad = |what: &str| {
        Error::backend(
            BackendErrorKind::Data,
            format!("redis results: task {id}'s record has no valid {what}"),
        )
    };
    let mut text = |k: &str| -> Result<String, Error> {
        String::from_utf8(h.remove(k).ok_or_else(|| bad(k))?).map_err(|_| bad(k))
    };
    let queue = text("queue")?;
    let handler = text("handler")?;
    let state: TaskState = text("state")?.parse().map_err(|_| bad("state"))?;
    let number = |h: &HashMap<String, Vec<u8>>, k: &str| -> Result<Option<i64>, Error> {
        match h.get(k) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| bad(k)),
        }
    };
    let count = |v: Option<i64>, k: &str| -> Result<u32, Error> {
        u32::try_from(v.unwrap_or(0)).map_err(|_| bad(k))
    };
    Ok(TaskRecord {
        id,
        queue,
        handler,
        state,
        payload: h.remove("payload").unwrap_or_default(),
        priority: 0,
        attempts: count(number(&h, "attempts")?, "attempts")?,
        max_attempts: count(number(&h, "max_attempts")?, "max_attempts")?,
        run_at: Timestamp(number(&h, "run_at")?.unwrap_or(0)),
        unique_key: None,
        ordering_key: None,
        result: h.remove("result"),
        error: match h.remove("error") {
            Some(e) => Some(String::from_utf8(e).map_err(|_| bad("error"))?),
            None => None,
        },
        created_at: Timestamp(number(&h, "created_at")?.unwrap_or(0)),
        finished_at: number(&h, "finished_at")?.map(Timestamp),
        trace: h
            .get("trace")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| TraceContext::decode(s).ok()),
        // No history: see the module documentation.
        history: Vec::new(),
    })
}

/// The record of `m` in `state`: `attempts` started so far, waiting until
/// `run_at`; `finished_at` for a final state.
pub(crate) fn record(
    m: &TaskMessage,
    state: TaskState,
    attempts: u32,
    now: Timestamp,
) -> TaskRecord {
    TaskRecord {
        id: m.id,
        queue: m.queue.clone(),
        handler: m.handler.clone(),
        state,
        payload: m.payload.clone(),
        priority: 0,
        attempts,
        max_attempts: m.max_attempts,
        run_at: m.due_at,
        unique_key: None,
        ordering_key: None,
        result: None,
        error: m.error.clone(),
        created_at: m.enqueued_at,
        finished_at: state.is_finished().then_some(now),
        trace: m.trace.clone(),
        history: Vec::new(),
    }
}

/// A waiting task's record as enqueued (scheduled when due later).
pub(crate) fn waiting(m: &TaskMessage, now: Timestamp) -> TaskRecord {
    let state = if m.due_at.0 > now.0 {
        TaskState::Scheduled
    } else {
        TaskState::Available
    };
    record(m, state, m.attempts, now)
}

#[async_trait]
impl ResultStore for Results {
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        let mut conn = self.conn.clone();
        let h: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.key(id))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("read", e))?;
        if h.is_empty() {
            return Ok(None);
        }
        parse(id, h).map(Some)
    }

    async fn finish_mark(&self) -> Option<FinishMark> {
        self.listen();
        Some(self.board.mark())
    }

    async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) -> bool {
        self.listen();
        let _ = tokio::time::timeout(timeout, self.board.wait(id, since)).await;
        true
    }
}

/// The fuzz tests of every decoder of this crate (docs/fuzzing.md).
#[cfg(test)]
mod fuzz;
