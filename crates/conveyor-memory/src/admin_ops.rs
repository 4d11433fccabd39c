//! What operators and maintenance do to the [`State`]: look tasks up, count
//! them per queue, list them by state, requeue or purge dead ones, prune
//! finished ones past their retention, and keep global handler limits.

use std::collections::BTreeMap;

use conveyor_core::{
    Error, HandlerLimits, ListOrder, ListParams, QueueStats, Retention, TaskId, TaskRecord,
    TaskState, Timestamp, Transition,
};

use crate::state::{Entry, State};

impl State {
    /// A copy of the task's record, if it is still held.
    pub(crate) fn get(&self, id: TaskId) -> Option<TaskRecord> {
        self.tasks.get(&id.0).map(Entry::read)
    }

    /// Counts per queue and state, with when the oldest ready task became ready.
    pub(crate) fn stats(&self, now: Timestamp) -> Vec<QueueStats> {
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        for e in self.tasks.values() {
            let rec = &e.record;
            let qs = by_queue
                .entry(rec.queue.clone())
                .or_insert_with(|| QueueStats {
                    queue: rec.queue.clone(),
                    ..QueueStats::default()
                });
            *qs.counts.entry(rec.state).or_default() += 1;
            let ready =
                rec.state == TaskState::Available || (rec.state.is_waiting() && rec.run_at <= now);
            // Ready since its due time (enqueued, or the end of a delay or
            // backoff).
            let since = rec.run_at.max(rec.created_at);
            if ready && qs.oldest_ready.is_none_or(|t| since < t) {
                qs.oldest_ready = Some(since);
            }
        }
        by_queue.into_values().collect()
    }

    /// The tasks `params` asks for: by id, the order's way, after its cursor.
    pub(crate) fn list(&self, params: &ListParams) -> Vec<TaskRecord> {
        let newest = params.order == ListOrder::NewestFirst;
        let after = |id: TaskId| match (params.after, newest) {
            (None, _) => true,
            (Some(a), false) => id > a,
            (Some(a), true) => id < a,
        };
        let mut out: Vec<TaskRecord> = self
            .tasks
            .values()
            .filter(|e| {
                let r = &e.record;
                r.state == params.state
                    && params.queue.as_ref().is_none_or(|q| &r.queue == q)
                    && params.handler.as_ref().is_none_or(|h| &r.handler == h)
                    && after(r.id)
            })
            .map(Entry::read)
            .collect();
        if newest {
            out.sort_by_key(|r| std::cmp::Reverse(r.id));
        } else {
            out.sort_by_key(|r| r.id);
        }
        out.truncate(params.limit);
        out
    }

    /// Makes the named dead tasks available again with fresh attempts; returns
    /// how many moved.
    pub(crate) fn requeue_dead(&mut self, ids: &[TaskId], now: Timestamp) -> Result<u64, Error> {
        let mut moved = 0;
        for id in ids {
            let Some(rec) = self.tasks.get(&id.0).map(|e| &e.record) else {
                continue;
            };
            // A dead task whose unique key another unfinished task holds now
            // stays dead: requeueing it would make two.
            let key_taken = rec
                .unique_key
                .as_ref()
                .is_some_and(|k| self.unique.contains_key(&(rec.queue.clone(), k.clone())));
            if rec.state != TaskState::Dead || key_taken {
                continue;
            }
            if let Some(e) = self.tasks.get_mut(&id.0) {
                e.record.attempts = 0;
                e.record.finished_at = None;
                e.record.expires_at = None;
                e.record.run_at = now;
            }
            self.move_task(id.0, Transition::Requeue, now)?;
            self.rejoin_keys(id.0);
            moved += 1;
        }
        Ok(moved)
    }

    /// Deletes the dead tasks (of one queue, or all); returns how many.
    pub(crate) fn purge_dead(&mut self, queue: Option<&str>) -> u64 {
        let before = self.tasks.len();
        self.tasks.retain(|_, e| {
            !(e.record.state == TaskState::Dead && queue.is_none_or(|q| e.record.queue == q))
        });
        (before - self.tasks.len()) as u64
    }

    /// Deletes finished tasks older than their retention; returns how many.
    pub(crate) fn prune(&mut self, retention: Retention, now: Timestamp) -> u64 {
        let finished_before = now.minus(retention.finished);
        let dead_before = now.minus(retention.dead);
        let before = self.tasks.len();
        self.tasks.retain(|_, e| {
            let Some(at) = e.record.finished_at else {
                return true;
            };
            if let Some(expires) = e.record.expires_at {
                return expires >= now;
            }
            match e.record.state {
                TaskState::Completed | TaskState::Cancelled => at >= finished_before,
                TaskState::Dead => at >= dead_before,
                _ => true,
            }
        });
        self.prune_workflows(finished_before, dead_before);
        (before - self.tasks.len()) as u64
    }

    /// Sets (or, when unlimited, removes) a handler's global limits, keeping
    /// its rate state.
    pub(crate) fn set_limits(&mut self, handler: &str, limits: HandlerLimits) {
        if limits.is_unlimited() {
            self.limits.remove(handler);
        } else {
            let tat = self.limits.get(handler).and_then(|(_, t)| *t);
            self.limits.insert(handler.to_string(), (limits, tat));
        }
    }

    /// Every handler's global limits.
    pub(crate) fn limits(&self) -> Vec<(String, HandlerLimits)> {
        self.limits
            .iter()
            .map(|(h, (l, _))| (h.clone(), *l))
            .collect()
    }
}
