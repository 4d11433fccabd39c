//! How a task ended, as the commands that read results print it and exit
//! with it: one JSON object per task, and one exit status for many tasks —
//! the worst of theirs.
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | every task completed |
//! | 1 | a task failed for good (dead-lettered) |
//! | 3 | a task has not finished (still waiting or running; `--timeout` ran out) |
//! | 4 | a task was cancelled or discarded |
//! | 5 | no task has this id (never enqueued, or pruned) |
//!
//! With several tasks the first that applies in the order 5, 1, 4, 3, 0 is
//! the exit status. (2 is a usage error.)

use std::process::ExitCode;

use conveyor::durable::TaskRecord;
use conveyor::{TaskId, TaskState};
use serde_json::{json, Value};

/// How one task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Completed.
    Completed,
    /// Not finished yet.
    Unfinished,
    /// Cancelled or discarded.
    Cancelled,
    /// Dead-lettered.
    Failed,
    /// No such task.
    Unknown,
}

impl Verdict {
    /// The verdict of a record (`None`: no such task).
    pub fn of(record: Option<&TaskRecord>) -> Verdict {
        match record.map(|r| r.state) {
            None => Verdict::Unknown,
            Some(TaskState::Completed) => Verdict::Completed,
            Some(TaskState::Dead) => Verdict::Failed,
            Some(TaskState::Cancelled) => Verdict::Cancelled,
            Some(_) => Verdict::Unfinished,
        }
    }

    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Verdict::Completed => 0,
            Verdict::Failed => 1,
            Verdict::Unfinished => 3,
            Verdict::Cancelled => 4,
            Verdict::Unknown => 5,
        }
    }

    /// The exit status of many tasks: the worst verdict's.
    pub fn exit(verdicts: impl IntoIterator<Item = Verdict>) -> ExitCode {
        ExitCode::from(
            verdicts
                .into_iter()
                .max()
                .unwrap_or(Verdict::Completed)
                .code(),
        )
    }
}

/// Stored bytes (params, a result) as JSON; bytes that are not JSON as text.
pub fn decoded(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(bytes)))
}

/// One task as a result line: id, state, attempts, and its result or error.
pub fn line(id: TaskId, record: Option<&TaskRecord>) -> Value {
    let Some(r) = record else {
        return json!({ "id": id.0, "state": "unknown", "error": "no task has this id" });
    };
    let mut v = json!({
        "id": r.id.0,
        "state": r.state.as_str(),
        "handler": r.handler,
        "queue": r.queue,
        "attempts": r.attempts,
    });
    if r.state == TaskState::Completed {
        v["result"] = r.result.as_deref().map(decoded).unwrap_or(Value::Null);
    }
    if let Some(e) = &r.error {
        v["error"] = json!(e);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_decides() {
        let code = |v: &[Verdict]| Verdict::exit(v.iter().copied());
        assert_eq!(code(&[]), ExitCode::from(0));
        assert_eq!(
            code(&[Verdict::Completed, Verdict::Unfinished]),
            ExitCode::from(3)
        );
        assert_eq!(
            code(&[Verdict::Unfinished, Verdict::Cancelled]),
            ExitCode::from(4)
        );
        assert_eq!(
            code(&[Verdict::Cancelled, Verdict::Failed]),
            ExitCode::from(1)
        );
        assert_eq!(
            code(&[Verdict::Failed, Verdict::Unknown]),
            ExitCode::from(5)
        );
    }
}
