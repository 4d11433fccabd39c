//! A task's attempts as a backend keeps them: who ran each one, when it
//! started and ended, and how it ended ([`AttemptRecord`], read back in
//! [`TaskRecord::history`](crate::TaskRecord::history)).
//!
//! A backend keeps them cheaply, and every backend the same way:
//!
//! - the **latest attempt** lives in the task's own fields: the worker that
//!   reserved it and when (written by the statement that reserves, nothing
//!   more), its number (`attempts`) and, once the task completes, its end
//!   (`finished_at`). While the task runs, or once it completed, that is
//!   where its latest attempt is read from ([`LatestAttempt`]);
//! - an attempt that ends any other way (failed, dead-lettered, discarded,
//!   released, lease expired, cancelled) is **appended** to the task's stored history
//!   by the statement that settles it, as one JSON object in a JSON array
//!   ([`append_history`] writes the same bytes the SQL and Lua of the
//!   backends write; [`decode_history`] reads them).
//!
//! So a task that succeeds at its first attempt appends nothing: its
//! history is read from its own fields. A history keeps the latest
//! [`HISTORY_LIMIT`] settled attempts (older ones are dropped: the attempt
//! numbers show the gap) and each error text is cut to [`ERROR_CHARS`]
//! characters, so one task's row never grows without bound.
//!
//! The stored form is an array of objects with short keys: `n` the attempt
//! number, `w` the worker id (absent or null for none), `s` and `e` the
//! start and end (milliseconds since the epoch), `o` the outcome
//! (`failed`, `dead`, `discarded`, `released`, `expired`, `cancelled`,
//! `succeeded`) and
//! `x` its error text. A stored history that does not decode reads as an
//! empty one, and an entry that does not decode (an unknown outcome, no
//! start) is left out: data read from a store never panics.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::task_state::TaskState;

/// Most settled attempts a task's stored history keeps (the latest ones).
pub const HISTORY_LIMIT: usize = 25;

/// Most characters of an error text an attempt keeps: enough for most
/// tracebacks (the task's own `error` keeps the whole text).
pub const ERROR_CHARS: usize = 4096;

/// The error a task cancelled while it ran keeps: what `show` and a
/// waiter's `TaskFailed` say of it (a task cancelled while it waited keeps
/// none).
pub const CANCELLED_WHILE_RUNNING: &str = "cancelled while it ran";

/// How an attempt ended (or that it has not yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// It runs now: a worker holds the task's lease.
    Running,
    /// The handler succeeded; the task completed.
    Succeeded,
    /// The handler failed and the task was retried.
    Failed {
        /// What went wrong (at most [`ERROR_CHARS`] characters).
        error: String,
    },
    /// The handler failed and the task died: a permanent error, or its
    /// last attempt failed.
    DeadLettered {
        /// What went wrong (at most [`ERROR_CHARS`] characters).
        error: String,
    },
    /// The handler asked to drop the task.
    Discarded {
        /// Why (at most [`ERROR_CHARS`] characters).
        reason: String,
    },
    /// The worker handed the task back without starting it (a stop): the
    /// attempt did not count, so the next one has the same number.
    Released,
    /// The worker's lease ran out (it was killed, or lost its backend) and
    /// maintenance took the task back: to run again, or dead when it was
    /// the last attempt.
    LeaseExpired,
    /// An operator cancelled the task while this attempt ran: its lease
    /// ended there, so the worker stopped it and nothing it reported
    /// afterwards was kept.
    Cancelled,
}

impl AttemptOutcome {
    /// A short label for people: `running`, `succeeded`, `failed`,
    /// `dead-lettered`, `discarded`, `released`, `lease expired`,
    /// `cancelled`.
    pub fn label(&self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::DeadLettered { .. } => "dead-lettered",
            AttemptOutcome::Discarded { .. } => "discarded",
            AttemptOutcome::Released => "released",
            AttemptOutcome::LeaseExpired => "lease expired",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }

    /// The error (or discard reason) it ended with, if any.
    pub fn error(&self) -> Option<&str> {
        match self {
            AttemptOutcome::Failed { error } | AttemptOutcome::DeadLettered { error } => {
                Some(error)
            }
            AttemptOutcome::Discarded { reason } => Some(reason),
            _ => None,
        }
    }

    /// The stored code (see the module documentation); `None` for
    /// [`AttemptOutcome::Running`], which is never stored.
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            AttemptOutcome::Running => return None,
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::DeadLettered { .. } => "dead",
            AttemptOutcome::Discarded { .. } => "discarded",
            AttemptOutcome::Released => "released",
            AttemptOutcome::LeaseExpired => "expired",
            AttemptOutcome::Cancelled => "cancelled",
        })
    }

    fn from_code(code: &str, text: Option<String>) -> Option<AttemptOutcome> {
        let text = || text.clone().unwrap_or_default();
        Some(match code {
            "succeeded" => AttemptOutcome::Succeeded,
            "failed" => AttemptOutcome::Failed { error: text() },
            "dead" => AttemptOutcome::DeadLettered { error: text() },
            "discarded" => AttemptOutcome::Discarded { reason: text() },
            "released" => AttemptOutcome::Released,
            "expired" => AttemptOutcome::LeaseExpired,
            "cancelled" => AttemptOutcome::Cancelled,
            _ => return None,
        })
    }
}

/// One attempt of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Its number, from 1 (as the task's `attempts` counted it; a requeued
    /// dead task counts from 1 again).
    pub attempt: u32,
    /// The id of the worker that reserved it ([`WorkerInfo::id`](crate::WorkerInfo)),
    /// `None` when the reservation named none.
    pub worker: Option<String>,
    /// When it was reserved (the backend's clock).
    pub started_at: Timestamp,
    /// When it was settled (the backend's clock); `None` while it runs.
    pub ended_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

impl AttemptRecord {
    /// How long it ran (or has run by `now`, while it runs).
    pub fn duration(&self, now: Timestamp) -> std::time::Duration {
        self.ended_at.unwrap_or(now).since(self.started_at)
    }
}

/// What a task's own fields say of its latest attempt: the running one, or
/// the one that completed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestAttempt<'a> {
    /// The task's state.
    pub state: TaskState,
    /// The task's attempt count (the latest attempt's number).
    pub attempts: u32,
    /// The worker that reserved the latest attempt.
    pub worker: Option<&'a str>,
    /// When the latest attempt was reserved; `None` when no reservation
    /// recorded it (never reserved, or reserved before the backend kept
    /// history).
    pub started_at: Option<Timestamp>,
    /// When the task finished.
    pub finished_at: Option<Timestamp>,
}

impl LatestAttempt<'_> {
    /// The attempt, when the task's fields hold one that is not in the
    /// stored history: it runs, or it completed the task.
    pub fn record(&self) -> Option<AttemptRecord> {
        let started_at = self.started_at?;
        let (ended_at, outcome) = match self.state {
            TaskState::Running => (None, AttemptOutcome::Running),
            TaskState::Completed => (self.finished_at, AttemptOutcome::Succeeded),
            _ => return None,
        };
        Some(AttemptRecord {
            attempt: self.attempts,
            worker: self.worker.map(str::to_string),
            started_at,
            ended_at,
            outcome,
        })
    }
}

/// A task's whole history: its stored (settled) attempts, oldest first,
/// then the latest one its own fields hold, if any.
pub fn full_history(
    mut settled: Vec<AttemptRecord>,
    latest: LatestAttempt<'_>,
) -> Vec<AttemptRecord> {
    settled.extend(latest.record());
    settled
}

/// `text` cut to its first [`ERROR_CHARS`] characters.
pub fn clip_error(text: &str) -> &str {
    match text.char_indices().nth(ERROR_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// One attempt as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    n: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<String>,
    s: Option<i64>,
    #[serde(default)]
    e: Option<i64>,
    o: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
}

impl Stored {
    fn of(a: &AttemptRecord) -> Option<Stored> {
        Some(Stored {
            n: a.attempt,
            w: a.worker.clone(),
            s: Some(a.started_at.0),
            e: a.ended_at.map(|t| t.0),
            o: a.outcome.code()?.to_string(),
            x: a.outcome.error().map(|e| clip_error(e).to_string()),
        })
    }

    fn record(self) -> Option<AttemptRecord> {
        let outcome = AttemptOutcome::from_code(&self.o, self.x)?;
        Some(AttemptRecord {
            attempt: self.n,
            worker: self.w.filter(|w| !w.is_empty()),
            started_at: Timestamp(self.s?),
            ended_at: self.e.map(Timestamp),
            outcome,
        })
    }
}

/// The settled attempts of a stored history, oldest first. `None`, an empty
/// text, or a text that does not decode is an empty history; an entry that
/// does not decode is left out.
pub fn decode_history(stored: Option<&str>) -> Vec<AttemptRecord> {
    let Some(text) = stored.filter(|t| !t.is_empty()) else {
        return Vec::new();
    };
    let Ok(entries) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Stored>(v).ok())
        .filter_map(Stored::record)
        .collect()
}

/// The stored form of `history` (its latest [`HISTORY_LIMIT`] settled
/// attempts; a running one is left out).
pub fn encode_history(history: &[AttemptRecord]) -> String {
    let stored: Vec<Stored> = history.iter().filter_map(Stored::of).collect();
    let skip = stored.len().saturating_sub(HISTORY_LIMIT);
    // Numbers and strings always serialise.
    serde_json::to_string(&stored[skip..]).unwrap_or_else(|_| "[]".to_string())
}

/// `stored` with `attempt` appended, keeping the latest [`HISTORY_LIMIT`].
pub fn append_history(stored: Option<&str>, attempt: AttemptRecord) -> String {
    let mut history = decode_history(stored);
    history.push(attempt);
    encode_history(&history)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn failed(n: u32, error: &str) -> AttemptRecord {
        AttemptRecord {
            attempt: n,
            worker: Some("h:1:ab".into()),
            started_at: Timestamp(1_000 * i64::from(n)),
            ended_at: Some(Timestamp(1_000 * i64::from(n) + 5)),
            outcome: AttemptOutcome::Failed {
                error: error.into(),
            },
        }
    }

    #[test]
    fn a_history_round_trips_and_stays_bounded() {
        let mut stored = None::<String>;
        for n in 1..=30 {
            stored = Some(append_history(stored.as_deref(), failed(n, "boom")));
        }
        let back = decode_history(stored.as_deref());
        assert_eq!(back.len(), HISTORY_LIMIT);
        assert_eq!(back[0], failed(6, "boom"));
        assert_eq!(back[HISTORY_LIMIT - 1], failed(30, "boom"));
    }

    #[test]
    fn errors_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(ERROR_CHARS + 10);
        assert_eq!(clip_error(&long).chars().count(), ERROR_CHARS);
        assert_eq!(clip_error("short"), "short");
        let back = decode_history(Some(&append_history(None, failed(1, &long))));
        assert_eq!(
            back[0].outcome.error().unwrap().chars().count(),
            ERROR_CHARS
        );
    }

    #[test]
    fn what_the_stores_write_reads_back() {
        // As the SQL and Lua write it: nulls for absent fields, every outcome.
        let text = r#"[{"n":1,"w":null,"s":10,"e":20,"o":"expired","x":null},
            {"n":2,"w":"w1","s":30,"e":40,"o":"dead","x":"no"},
            {"n":2,"w":"","s":30,"e":40,"o":"released"},
            {"n":3,"s":null,"e":40,"o":"failed","x":"no start: left out"},
            {"n":4,"s":50,"e":60,"o":"what"},
            {"n":5,"s":70,"e":80,"o":"discarded","x":"why"}]"#;
        let back = decode_history(Some(text));
        let outcomes: Vec<&str> = back.iter().map(|a| a.outcome.label()).collect();
        assert_eq!(
            outcomes,
            ["lease expired", "dead-lettered", "released", "discarded"]
        );
        assert_eq!(back[0].worker, None);
        assert_eq!(back[2].worker, None, "an empty worker id is none");
        assert_eq!(back[1].outcome.error(), Some("no"));
        for bad in ["", "{", "{}", "[1,2]", "null"] {
            assert!(decode_history(Some(bad)).is_empty(), "{bad}");
        }
    }

    #[test]
    fn the_latest_attempt_comes_from_the_task_itself() {
        let latest = |state| LatestAttempt {
            state,
            attempts: 2,
            worker: Some("w"),
            started_at: Some(Timestamp(5)),
            finished_at: Some(Timestamp(9)),
        };
        let running = latest(TaskState::Running).record().unwrap();
        assert_eq!(
            (running.ended_at, running.outcome),
            (None, AttemptOutcome::Running)
        );
        let done = latest(TaskState::Completed).record().unwrap();
        assert_eq!(done.ended_at, Some(Timestamp(9)));
        assert_eq!(done.attempt, 2);
        assert!(latest(TaskState::Retrying).record().is_none());
        let never = LatestAttempt {
            started_at: None,
            ..latest(TaskState::Completed)
        };
        assert!(never.record().is_none());
        let all = full_history(vec![failed(1, "x")], latest(TaskState::Completed));
        assert_eq!(all.len(), 2);
    }
}
