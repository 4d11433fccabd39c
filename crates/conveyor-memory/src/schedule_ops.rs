//! Schedules in memory, under the backend's one lock: a due schedule's
//! fires are decided by `conveyor_core::schedule::plan` and enqueued, and
//! its next fire moved on, in the same step.

use conveyor_core::schedule::{Fired, Schedule, ScheduleRecord};
use conveyor_core::{TaskId, Timestamp};

use crate::state::State;

impl State {
    /// Stores `schedule` (see `Schedules::put_schedule`).
    pub(crate) fn put_schedule(&mut self, schedule: &Schedule, now: Timestamp) -> ScheduleRecord {
        let record = ScheduleRecord::declare(schedule, self.schedules.get(&schedule.name), now);
        self.schedules.insert(schedule.name.clone(), record.clone());
        record
    }

    /// Pauses or resumes schedule `name`.
    pub(crate) fn pause_schedule(
        &mut self,
        name: &str,
        paused: bool,
        now: Timestamp,
    ) -> Option<ScheduleRecord> {
        let kept = self.schedules.get_mut(name)?;
        kept.set_paused(paused, now);
        Some(kept.clone())
    }

    /// Whether task `id` has not ended.
    fn still_running(&self, id: TaskId) -> bool {
        self.tasks
            .get(&id.0)
            .is_some_and(|e| !e.record.state.is_finished())
    }

    /// Fires every schedule due at `now` that is not paused.
    pub(crate) fn fire_due(&mut self, now: Timestamp) -> Vec<Fired> {
        let due: Vec<String> = self
            .schedules
            .values()
            .filter(|k| !k.paused && k.next_fire.is_some_and(|t| t.0 <= now.0))
            .map(|k| k.schedule.name.clone())
            .collect();
        let mut fired = Vec::new();
        for name in due {
            let Some(kept) = self.schedules.get(&name) else {
                continue;
            };
            let running = kept
                .watched_task()
                .is_some_and(|task| self.still_running(task));
            let Some(plan) = kept.plan(now, running) else {
                continue;
            };
            let schedule = kept.schedule.clone();
            let mut last = None;
            for &at in &plan.fires {
                if let Some(e) = self.enqueue(vec![schedule.fire(at)], now).pop() {
                    fired.push(Fired {
                        name: name.clone(),
                        at,
                        task: e.id,
                    });
                    last = Some((at, e.id));
                }
            }
            if let Some(kept) = self.schedules.get_mut(&name) {
                kept.fired(&plan, last);
            }
        }
        fired
    }

    /// Enqueues one fire of schedule `name` now.
    pub(crate) fn trigger_schedule(&mut self, name: &str, now: Timestamp) -> Option<TaskId> {
        let fire = self.schedules.get(name)?.schedule.fire(now);
        let task = self.enqueue(vec![fire], now).pop()?.id;
        if let Some(kept) = self.schedules.get_mut(name) {
            kept.last_task = Some(task);
        }
        Some(task)
    }
}
