//! What a due schedule does now: one decision for every store, from its
//! stored next fire, its misfire and overlap policies, and whether its
//! last fire's task is still running.

use super::{due, Fired, Overlap, Schedule, ScheduleRecord};
use crate::{Error, TaskId, Timestamp};

/// What a store does for a schedule at a moment: the fire times to enqueue
/// (each under its fire key), the next fire time to store, and how many
/// fire times were passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The fire times to enqueue, oldest first.
    pub fires: Vec<Timestamp>,
    /// The next fire time to store (`None`: the timing has no more).
    pub next: Option<Timestamp>,
    /// Fire times passed over (missed, or skipped by the overlap policy).
    pub missed: u64,
}

/// What `schedule`, whose next fire time is stored as `next`, does at
/// `now`; `previous_running` says whether its last fire's task has not
/// ended. `None` when nothing is to be written: its next fire has not
/// come, or it waits for the previous fire's task (`Overlap::Queue`).
///
/// Under `Overlap::Queue` the fire held back is fired once the previous
/// task ends, however late (its latest fire time, once), rather than
/// counted missed.
pub fn plan(
    schedule: &Schedule,
    next: Timestamp,
    now: Timestamp,
    previous_running: bool,
) -> Option<Plan> {
    if next.0 > now.0 {
        return None;
    }
    if previous_running && schedule.overlap == Overlap::Queue {
        return None;
    }
    let grace = if schedule.overlap == Overlap::Queue {
        // A fire held back is on time once it may go.
        let held = std::time::Duration::from_millis(now.0.saturating_sub(next.0) as u64);
        schedule.grace.max(held)
    } else {
        schedule.grace
    };
    let d = due(&schedule.timing, next, now, schedule.misfire, grace);
    if previous_running && schedule.overlap == Overlap::Skip {
        return Some(Plan {
            missed: d.missed + d.fires.len() as u64,
            fires: Vec::new(),
            next: d.next,
        });
    }
    Some(Plan {
        fires: d.fires,
        next: d.next,
        missed: d.missed,
    })
}

/// The fires of `planned` (schedules and their plans, in order), every one
/// enqueued in one batch in that order and given `tasks`: what was fired,
/// and each schedule moved on ([`ScheduleRecord::fired`]).
pub fn enqueued(
    planned: Vec<(ScheduleRecord, Plan)>,
    tasks: impl IntoIterator<Item = TaskId>,
) -> Result<(Vec<Fired>, Vec<ScheduleRecord>), Error> {
    let mut tasks = tasks.into_iter();
    let mut fired = Vec::new();
    let mut moved = Vec::with_capacity(planned.len());
    for (mut record, plan) in planned {
        let mut last = None;
        for &at in &plan.fires {
            let task = tasks
                .next()
                .ok_or_else(|| Error::backend_other("a fire was not enqueued"))?;
            fired.push(Fired {
                name: record.schedule.name.clone(),
                at,
                task,
            });
            last = Some((at, task));
        }
        record.fired(&plan, last);
        moved.push(record);
    }
    Ok((fired, moved))
}
