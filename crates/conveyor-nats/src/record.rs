//! The ledger's record of one task: everything the state machine decides
//! on (state, attempts, lease token, lease end, run-at), what the task is
//! (queue, handler, payload, options) and what became of it (result,
//! error, finish time), plus the two fields that tie it to JetStream
//! messages: `dispatch` (which ready message is the live one) and
//! `msg_seq` (the stream sequence of the message the current lease holds).
//!
//! Stored as one key-value entry in a binary encoding (`wire.rs`: a
//! version byte, then the fields). Records written by earlier versions, a
//! line of JSON with the fields and then the payload's bytes and the
//! result's (their lengths in the JSON), are still read: they begin with
//! `{`, never with the version byte. The latest attempt's worker and start
//! and the settled attempts (`conveyor_core::attempt`) are fields too. A record changes only by
//! compare-and-set on the entry's revision, and only along
//! [`Transition`] edges ([`Rec::apply`]).

use std::time::Duration;

use conveyor_core::attempt::{append_history, decode_history, full_history, LatestAttempt};
use conveyor_core::{
    AttemptOutcome, AttemptRecord, Error, NewTask, Reserved, Retention, TaskId, TaskRecord,
    TaskState, Timestamp, TraceContext, Transition,
};
use serde::{Deserialize, Serialize};

/// A task to create: a [`NewTask`] with its first run time resolved, so
/// creating it again (after a crash, for a follow-up) creates the same task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub(crate) queue: String,
    pub(crate) handler: String,
    #[serde(with = "hex")]
    pub(crate) payload: Vec<u8>,
    pub(crate) priority: i32,
    pub(crate) run_at: i64,
    pub(crate) max_attempts: u32,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) unique_key: Option<String>,
    /// The trace context given at enqueue, as `TraceContext::encode` wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) trace: Option<String>,
    /// How long it is kept once finished (`NewTask::keep`), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep_ms: Option<u64>,
}

impl Spec {
    /// `task` as it will be stored when enqueued at `now`.
    pub(crate) fn of(task: &NewTask, now: Timestamp) -> Spec {
        Spec {
            queue: task.queue.clone(),
            handler: task.handler.clone(),
            payload: task.payload.clone(),
            priority: task.priority,
            run_at: task.first_run(now).as_millis(),
            max_attempts: task.max_attempts,
            timeout_ms: task.timeout.map(millis),
            unique_key: task.unique_key.clone(),
            trace: task.trace.as_ref().map(TraceContext::encode),
            keep_ms: task.keep.map(millis),
        }
    }
}

/// A duration in whole milliseconds (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A follow-up a finished record still has to enqueue, with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FollowUp {
    pub(crate) id: u64,
    pub(crate) spec: Spec,
}

/// The workflow node a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeLink {
    /// The workflow's id.
    pub(crate) flow: u64,
    /// The node's index in its graph.
    pub(crate) node: u32,
}

/// One task's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rec {
    pub(crate) id: u64,
    pub(crate) queue: String,
    pub(crate) handler: String,
    pub(crate) priority: i32,
    pub(crate) max_attempts: u32,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) unique_key: Option<String>,
    /// The state's code ([`TaskState::code`]).
    pub(crate) state: i64,
    pub(crate) attempts: u32,
    /// Reservations so far, released ones included: the source of tokens.
    pub(crate) reservations: u64,
    /// The token of the current (or last) lease; 0 before the first.
    pub(crate) token: u64,
    pub(crate) lease_until: Option<i64>,
    pub(crate) run_at: i64,
    pub(crate) created_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) error: Option<String>,
    /// The number of the live ready message (see `docs/nats.md`).
    pub(crate) dispatch: u64,
    /// The stream sequence of the message the current lease holds.
    pub(crate) msg_seq: Option<u64>,
    /// The trace context given at enqueue, as `TraceContext::encode` wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) trace: Option<String>,
    /// Follow-ups the finish stored and has not enqueued yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) follow_ups: Vec<FollowUp>,
    /// The worker of the latest attempt (set by the reservation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) worker: Option<String>,
    /// When the latest attempt was reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) started_at: Option<i64>,
    /// The settled attempts, in the stored form of `conveyor_core::attempt`
    /// (none until an attempt ends other than by a success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) history: Option<String>,
    /// How long it is kept once finished, in milliseconds, as enqueued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep_ms: Option<u64>,
    /// When it may be pruned, once finished with a keep or a report's
    /// retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<i64>,
    /// The workflow node this task runs, if any: its end settles the node
    /// (`workflows/`), and it is kept as long as its workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<NodeLink>,
    pub(crate) payload_len: usize,
    pub(crate) result_len: Option<usize>,
    #[serde(skip)]
    pub(crate) payload: Vec<u8>,
    #[serde(skip)]
    pub(crate) result: Option<Vec<u8>>,
}

impl Rec {
    /// A new task `id` from `spec`, enqueued at `now`: available (with its
    /// first ready message numbered 1) or scheduled (its schedule entry
    /// will be numbered 1).
    pub(crate) fn new(id: u64, spec: &Spec, now: Timestamp) -> Rec {
        let ready = spec.run_at <= now.as_millis();
        let state = if ready {
            Transition::Enqueue.target()
        } else {
            Transition::Schedule.target()
        };
        Rec {
            id,
            queue: spec.queue.clone(),
            handler: spec.handler.clone(),
            priority: spec.priority,
            max_attempts: spec.max_attempts,
            timeout_ms: spec.timeout_ms,
            unique_key: spec.unique_key.clone(),
            state: state.code(),
            attempts: 0,
            reservations: 0,
            token: 0,
            lease_until: None,
            run_at: spec.run_at,
            created_at: now.as_millis(),
            finished_at: None,
            error: None,
            dispatch: u64::from(ready),
            msg_seq: None,
            trace: spec.trace.clone(),
            follow_ups: Vec::new(),
            worker: None,
            started_at: None,
            history: None,
            keep_ms: spec.keep_ms,
            expires_at: None,
            node: None,
            payload_len: spec.payload.len(),
            result_len: None,
            payload: spec.payload.clone(),
            result: None,
        }
    }

    /// Marks it finished at `now` (in the state it has just taken), with
    /// its expiry: its own keep, else `retention`'s for that state, else
    /// none.
    pub(crate) fn finished(&mut self, now: Timestamp, retention: Option<&Retention>) {
        self.finished_at = Some(now.as_millis());
        let keep = self.keep_ms.map(Duration::from_millis);
        // A node's task is kept as long as its workflow: its dependents
        // read its result from it, and the workflow's pruning removes it.
        self.expires_at = Retention::expiry(retention, keep, self.state(), now)
            .map(Timestamp::as_millis)
            .filter(|_| self.node.is_none());
    }

    /// The state.
    pub(crate) fn state(&self) -> TaskState {
        TaskState::from_code(self.state).unwrap_or(TaskState::Dead)
    }

    /// Moves along `t`, or says why not.
    pub(crate) fn apply(&mut self, t: Transition) -> Result<(), Error> {
        let next = t
            .apply(self.state())
            .map_err(|e| Error::backend(conveyor_core::BackendErrorKind::Data, e.to_string()))?;
        self.state = next.code();
        Ok(())
    }

    /// True when its run-at has come and it waits in `scheduled` or `retrying`.
    pub(crate) fn is_due(&self, now: Timestamp) -> bool {
        Transition::Due.sources().contains(&self.state()) && self.run_at <= now.as_millis()
    }

    /// True while it runs under a lease that `now` has passed.
    pub(crate) fn lease_expired(&self, now: Timestamp) -> bool {
        self.state() == TaskState::Running && self.lease_until.is_some_and(|u| u <= now.as_millis())
    }

    /// Appends the latest attempt to the history, ended at `now` as
    /// `outcome` (nothing for an attempt whose start was not recorded).
    pub(crate) fn settle_attempt(&mut self, outcome: AttemptOutcome, now: Timestamp) {
        let Some(started_at) = self.started_at else {
            return;
        };
        let attempt = AttemptRecord {
            attempt: self.attempts,
            worker: self.worker.clone(),
            started_at: Timestamp(started_at),
            ended_at: Some(now),
            outcome,
        };
        self.history = Some(append_history(self.history.as_deref(), attempt));
    }

    /// Sets the result.
    pub(crate) fn set_result(&mut self, result: Option<Vec<u8>>) {
        self.result_len = result.as_ref().map(Vec::len);
        self.result = result;
    }

    /// The record as conveyor reads it back.
    pub(crate) fn to_task(&self) -> TaskRecord {
        TaskRecord {
            id: TaskId(self.id),
            queue: self.queue.clone(),
            handler: self.handler.clone(),
            state: self.state(),
            payload: self.payload.clone(),
            priority: self.priority,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            run_at: Timestamp(self.run_at),
            unique_key: self.unique_key.clone(),
            ordering_key: None,
            result: self.result.clone(),
            error: self.error.clone(),
            created_at: Timestamp(self.created_at),
            finished_at: self.finished_at.map(Timestamp),
            trace: TraceContext::from_stored(self.trace.as_deref()),
            keep: self.keep_ms.map(Duration::from_millis),
            expires_at: self.expires_at.map(Timestamp),
            history: full_history(
                decode_history(self.history.as_deref()),
                LatestAttempt {
                    state: self.state(),
                    attempts: self.attempts,
                    worker: self.worker.as_deref(),
                    started_at: self.started_at.map(Timestamp),
                    finished_at: self.finished_at.map(Timestamp),
                },
            ),
        }
    }

    /// The reservation this record now is, with `receipt`.
    pub(crate) fn to_reserved(&self, receipt: conveyor_core::Receipt) -> Reserved {
        Reserved {
            lease: conveyor_core::Lease {
                id: TaskId(self.id),
                token: self.token,
                receipt,
            },
            queue: self.queue.clone(),
            handler: self.handler.clone(),
            payload: self.payload.clone(),
            attempt: self.attempts,
            max_attempts: self.max_attempts,
            timeout: self.timeout_ms.map(Duration::from_millis),
            ordering_key: None,
            enqueued_at: Timestamp(self.created_at),
            due_at: Timestamp(self.run_at),
            lease_until: Timestamp(self.lease_until.unwrap_or(self.run_at)),
            trace: TraceContext::from_stored(self.trace.as_deref()),
        }
    }
}

/// Bytes as a hex string in JSON (follow-up payloads only).
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("bad hex"))
            })
            .collect()
    }
}
