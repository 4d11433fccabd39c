//! A schedule as a store keeps it, and a fire as one reports it.

use super::Schedule;
use crate::{TaskId, Timestamp};

/// A stored schedule: its declaration and where its firing stands.
#[derive(Debug, Clone)]
pub struct ScheduleRecord {
    /// The schedule.
    pub schedule: Schedule,
    /// Paused: it fires only once resumed (the fires it would have made
    /// meanwhile are not made up).
    pub paused: bool,
    /// Its next fire time (`None`: its timing has no more).
    pub next_fire: Option<Timestamp>,
    /// Its last fire time, once it fired.
    pub last_fire: Option<Timestamp>,
    /// The task of its last fire.
    pub last_task: Option<TaskId>,
    /// Fire times passed over so far (missed, or skipped by its overlap
    /// policy).
    pub missed: u64,
}

/// One fire a store enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The schedule.
    pub name: String,
    /// Its fire time.
    pub at: Timestamp,
    /// The task enqueued.
    pub task: TaskId,
}
