//! The one state machine of a durable task, written down once.
//!
//! ```text
//!             enqueue (delayed)           due
//!   ──────────────▶ scheduled ─────────────────────┐
//!   enqueue                                         ▼
//!   ───────────────────────────────────────────▶ available ◀──────────────┐
//!                                                   │ reserve            │
//!                                                   ▼                    │ due
//!   completed ◀── complete ── running ── retry ──▶ retrying ─────────────┘
//!                              │  │ ▲
//!          dead-letter/expire  │  │ └ (release, expire: back to available)
//!   dead ◀─────────────────────┘  └── discard ──▶ cancelled
//!   scheduled | available | retrying ── cancel ──▶ cancelled
//!   dead ── requeue ──▶ available
//! ```
//!
//! Every backend moves tasks only along these edges: the memory backend calls
//! [`Transition::apply`], SQL backends build their `WHERE state IN (…)` clauses
//! from [`Transition::sources`] and write [`Transition::target`]. A new edge is a
//! change here, and only here.

use std::fmt;
use std::str::FromStr;

/// Where a durable task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    /// Waiting for its run-at time (enqueued with a delay).
    Scheduled,
    /// Ready to be reserved by a worker.
    Available,
    /// Reserved by a worker under a lease.
    Running,
    /// Failed an attempt; waiting for its backoff to pass.
    Retrying,
    /// Finished successfully (its result, if any, is stored).
    Completed,
    /// Failed for good (attempts exhausted, permanent error, bad payload).
    Dead,
    /// Cancelled before it ran, or discarded by its handler.
    Cancelled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Scheduled,
        TaskState::Available,
        TaskState::Running,
        TaskState::Retrying,
        TaskState::Completed,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    /// States a task waits in before (another) attempt.
    pub const WAITING: [TaskState; 3] = [
        TaskState::Scheduled,
        TaskState::Available,
        TaskState::Retrying,
    ];

    /// States with no way out but requeueing a dead task: the outcome is decided.
    pub const FINISHED: [TaskState; 3] =
        [TaskState::Completed, TaskState::Dead, TaskState::Cancelled];

    /// States that count as unfinished for unique keys and ordering keys.
    pub const UNFINISHED: [TaskState; 4] = [
        TaskState::Scheduled,
        TaskState::Available,
        TaskState::Running,
        TaskState::Retrying,
    ];

    /// A small stable integer for storage.
    pub fn code(self) -> i64 {
        match self {
            TaskState::Scheduled => 0,
            TaskState::Available => 1,
            TaskState::Running => 2,
            TaskState::Retrying => 3,
            TaskState::Completed => 4,
            TaskState::Dead => 5,
            TaskState::Cancelled => 6,
        }
    }

    /// The state stored as `code`, if it is one.
    pub fn from_code(code: i64) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The lowercase name used in the CLI, docs and string-typed stores.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Scheduled => "scheduled",
            TaskState::Available => "available",
            TaskState::Running => "running",
            TaskState::Retrying => "retrying",
            TaskState::Completed => "completed",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// True once the outcome is decided.
    pub fn is_finished(self) -> bool {
        TaskState::FINISHED.contains(&self)
    }

    /// True while the task waits for an attempt.
    pub fn is_waiting(self) -> bool {
        TaskState::WAITING.contains(&self)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown task state {s:?}"))
    }
}

/// An edge of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A new task ready now.
    Enqueue,
    /// A new task with a future run-at.
    Schedule,
    /// A scheduled or retrying task whose time has come.
    Due,
    /// A worker takes the task under a lease (the attempt count goes up).
    Reserve,
    /// The attempt succeeded.
    Complete,
    /// The attempt failed and attempts remain: wait for the backoff.
    Retry,
    /// The attempt failed for good.
    DeadLetter,
    /// The handler asked to drop the task.
    Discard,
    /// The worker hands the lease back without having started the task (the
    /// attempt is not counted).
    Release,
    /// The lease ran out (the worker died or hung) and attempts remain.
    Expire,
    /// The lease ran out on the last attempt.
    ExpireFinal,
    /// An operator cancels a waiting or running task. A running one's lease
    /// ends with it: the worker's next renewal or report is refused, so it
    /// stops the attempt, and nothing it reports afterwards is kept.
    Cancel,
    /// A dead task is put back to run again (`conveyor dead retry`).
    Requeue,
}

/// A transition that does not start from the task's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {state} task cannot take the {transition:?} transition")]
pub struct InvalidTransition {
    /// The task's state.
    pub state: TaskState,
    /// The refused transition.
    pub transition: Transition,
}

impl Transition {
    /// Every transition, in declaration order.
    pub const ALL: [Transition; 13] = [
        Transition::Enqueue,
        Transition::Schedule,
        Transition::Due,
        Transition::Reserve,
        Transition::Complete,
        Transition::Retry,
        Transition::DeadLetter,
        Transition::Discard,
        Transition::Release,
        Transition::Expire,
        Transition::ExpireFinal,
        Transition::Cancel,
        Transition::Requeue,
    ];

    /// The states this transition may start from (empty: only a new task).
    pub fn sources(self) -> &'static [TaskState] {
        use TaskState::*;
        match self {
            Transition::Enqueue | Transition::Schedule => &[],
            Transition::Due => &[Scheduled, Retrying],
            Transition::Reserve => &[Available],
            Transition::Complete
            | Transition::Retry
            | Transition::DeadLetter
            | Transition::Discard
            | Transition::Release
            | Transition::Expire
            | Transition::ExpireFinal => &[Running],
            Transition::Cancel => &[Scheduled, Available, Running, Retrying],
            Transition::Requeue => &[Dead],
        }
    }

    /// The state this transition ends in.
    pub fn target(self) -> TaskState {
        use TaskState::*;
        match self {
            Transition::Enqueue
            | Transition::Due
            | Transition::Release
            | Transition::Expire
            | Transition::Requeue => Available,
            Transition::Schedule => Scheduled,
            Transition::Reserve => Running,
            Transition::Complete => Completed,
            Transition::Retry => Retrying,
            Transition::DeadLetter | Transition::ExpireFinal => Dead,
            Transition::Discard | Transition::Cancel => Cancelled,
        }
    }

    /// The state after taking this transition from `from`, or why it may not.
    pub fn apply(self, from: TaskState) -> Result<TaskState, InvalidTransition> {
        if self.sources().contains(&from) {
            Ok(self.target())
        } else {
            Err(InvalidTransition {
                state: from,
                transition: self,
            })
        }
    }

    /// `state IN (…)` codes of [`Transition::sources`], for SQL backends.
    pub fn source_codes(self) -> String {
        codes(self.sources())
    }
}

/// A comma-separated list of state codes, for SQL `IN (…)` clauses.
pub fn codes(states: &[TaskState]) -> String {
    states
        .iter()
        .map(|s| s.code().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::from_code(s.code()), Some(s));
            assert_eq!(s.as_str().parse::<TaskState>(), Ok(s));
        }
        assert_eq!(TaskState::from_code(99), None);
    }

    #[test]
    fn finished_states_only_leave_by_requeue() {
        for s in TaskState::FINISHED {
            let exits: Vec<_> = Transition::ALL
                .iter()
                .filter(|t| t.apply(s).is_ok())
                .collect();
            if s == TaskState::Dead {
                assert_eq!(exits, vec![&Transition::Requeue]);
            } else {
                assert!(exits.is_empty(), "{s} leaves by {exits:?}");
            }
        }
    }

    #[test]
    fn running_tasks_can_be_cancelled_but_not_reserved_again() {
        assert_eq!(
            Transition::Cancel.apply(TaskState::Running),
            Ok(TaskState::Cancelled)
        );
        assert!(Transition::Cancel.apply(TaskState::Completed).is_err());
        assert!(Transition::Reserve.apply(TaskState::Running).is_err());
        assert_eq!(
            Transition::Complete.apply(TaskState::Running),
            Ok(TaskState::Completed)
        );
        assert_eq!(Transition::Cancel.source_codes(), "0,1,2,3");
    }
}
