//! A schedule as a store keeps it, and a fire as one reports it.

use super::{Overlap, Plan, Schedule};
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

impl ScheduleRecord {
    /// `schedule` as stored over `kept` (the record of its name, if there
    /// is one) at `now`: its next fire computed from now when it is new or
    /// its timing changed, else kept, as are its last fire, its missed
    /// count and whether it is paused (a declaration saying `paused`
    /// pauses it).
    pub fn declare(
        schedule: &Schedule,
        kept: Option<&ScheduleRecord>,
        now: Timestamp,
    ) -> ScheduleRecord {
        let same_timing =
            kept.is_some_and(|k| k.schedule.timing.describe() == schedule.timing.describe());
        ScheduleRecord {
            schedule: schedule.clone(),
            paused: schedule.paused || kept.is_some_and(|k| k.paused),
            next_fire: match kept {
                Some(k) if same_timing => k.next_fire,
                _ => schedule.timing.next_after(now),
            },
            last_fire: kept.and_then(|k| k.last_fire),
            last_task: kept.and_then(|k| k.last_task),
            missed: kept.map_or(0, |k| k.missed),
        }
    }

    /// The task whose end its plan waits on: the last fire's, under an
    /// overlap policy that looks at it (`skip`, `queue`); `None` under
    /// `allow`, so a store reads no task then.
    pub fn watched_task(&self) -> Option<TaskId> {
        (self.schedule.overlap != Overlap::Allow)
            .then_some(self.last_task)
            .flatten()
    }

    /// What it does at `now` ([`plan`](super::plan)), `running` saying
    /// whether its [watched task](Self::watched_task) has not ended; `None`
    /// also when it has no next fire.
    pub fn plan(&self, now: Timestamp, running: bool) -> Option<Plan> {
        super::plan(&self.schedule, self.next_fire?, now, running)
    }

    /// Pauses or resumes it at `now`: resumed, its next fire is the first
    /// after now.
    pub fn set_paused(&mut self, paused: bool, now: Timestamp) {
        if self.paused && !paused {
            self.next_fire = self.schedule.timing.next_after(now);
        }
        self.paused = paused;
    }

    /// Records what a [`Plan`](super::Plan) did: its next fire and missed
    /// count, and the last of the fires enqueued (time and task).
    pub fn fired(&mut self, plan: &super::Plan, last: Option<(Timestamp, TaskId)>) {
        self.next_fire = plan.next;
        self.missed += plan.missed;
        if let Some((at, task)) = last {
            self.last_fire = Some(at);
            self.last_task = Some(task);
        }
    }
}
