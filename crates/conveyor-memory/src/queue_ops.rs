//! A task's way through the queue, as operations on the [`State`]: enqueue,
//! reserve under a lease, renew, finish, cancel, and recovering expired leases.
//!
//! Each takes "now" from the caller (the backend's clock) and runs under the
//! backend's lock; waking idle workers is the backend's job, so the ones that
//! make work available say so in their return value.

use std::cmp::Reverse;

use conveyor_core::{
    Admission, AttemptOutcome, Enqueued, Error, Finish, FinishAction, Lease, NewTask,
    ReserveParams, Reserved, Retention, TaskId, TaskRecord, TaskState, Timestamp, Transition,
    CANCELLED_WHILE_RUNNING,
};

use crate::state::{Entry, State};

/// What [`State::finish`] did.
pub(crate) struct Finished {
    /// One outcome per report.
    pub(crate) out: Vec<Result<(), Error>>,
    /// Tasks may have become available (a task released, follow-ups
    /// enqueued).
    pub(crate) woke: bool,
    /// The tasks that reached a final state.
    pub(crate) done: Vec<TaskId>,
}

impl State {
    /// Stores validated tasks; a task whose unique key an unfinished task of its
    /// queue holds is reported as that task, a duplicate.
    pub(crate) fn enqueue(&mut self, tasks: Vec<NewTask>, now: Timestamp) -> Vec<Enqueued> {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            if let Some(k) = &t.unique_key {
                if let Some(&id) = self.unique.get(&(t.queue.clone(), k.clone())) {
                    out.push(Enqueued {
                        id: TaskId(id),
                        duplicate: true,
                    });
                    continue;
                }
            }
            let id = self.next_id;
            self.next_id += 1;
            let run_at = t.first_run(now);
            let first = if run_at > now {
                Transition::Schedule
            } else {
                Transition::Enqueue
            };
            let record = TaskRecord {
                id: TaskId(id),
                queue: t.queue,
                handler: t.handler,
                state: first.target(),
                payload: t.payload,
                priority: t.priority,
                attempts: 0,
                max_attempts: t.max_attempts,
                run_at,
                unique_key: t.unique_key,
                ordering_key: t.ordering_key,
                result: None,
                error: None,
                created_at: now,
                finished_at: None,
                trace: t.trace,
                keep: t.keep,
                expires_at: None,
                history: Vec::new(),
            };
            match record.state {
                TaskState::Available => {
                    self.ready
                        .entry(record.queue.clone())
                        .or_default()
                        .insert((Reverse(record.priority), id));
                }
                _ => {
                    self.timers.insert((run_at, id));
                }
            }
            self.tasks.insert(
                id,
                Entry {
                    record,
                    timeout: t.timeout,
                    token: 0,
                    lease_until: Timestamp(0),
                    worker: None,
                    started_at: None,
                },
            );
            self.rejoin_keys(id);
            out.push(Enqueued {
                id: TaskId(id),
                duplicate: false,
            });
        }
        out
    }

    /// Reserves up to `max` tasks from `queues` (in that order) under a lease
    /// until `now + lease`, honouring ordering keys and global handler limits,
    /// skipping paused queues and tasks of handlers the caller does not
    /// want; `worker` runs the attempts, from `now`.
    pub(crate) fn reserve(
        &mut self,
        params: ReserveParams<'_>,
        now: Timestamp,
    ) -> Result<Vec<Reserved>, Error> {
        let (queues, max) = (params.queues, params.max);
        let until = now.plus(params.lease);
        self.promote_due(now);
        let mut gate = Admission::new(now);
        for (h, (limits, tat)) in &self.limits {
            let running = self.running.get(h).copied().unwrap_or(0);
            gate.limit(h, *limits, running, *tat);
        }
        let mut picked = Vec::new();
        for q in queues {
            if picked.len() >= max {
                break;
            }
            if self.paused.contains(q) {
                continue;
            }
            // Choosing a key's head never makes another task of the key a head
            // within the same call, so the eligible tasks can be picked in one
            // read-only pass that stops as soon as enough are found.
            let want = max - picked.len();
            let chosen: Vec<u64> = match self.ready.get(q) {
                Some(set) => set
                    .iter()
                    .map(|&(_, id)| id)
                    .filter(|id| {
                        self.tasks.get(id).is_some_and(|e| {
                            params.wants(&e.record.handler)
                                && self.heads_its_key(&e.record)
                                && gate.admit(&e.record.handler)
                        })
                    })
                    .take(want)
                    .collect(),
                None => continue,
            };
            for id in chosen {
                if let Some(e) = self.tasks.get_mut(&id) {
                    e.token += 1;
                    e.lease_until = until;
                    e.record.attempts += 1;
                    e.worker = params.worker.map(str::to_string);
                    e.started_at = Some(now);
                }
                self.move_task(id, Transition::Reserve, now)?;
                picked.push(id);
            }
        }
        for (h, tat) in gate.moved_rates() {
            if let Some(entry) = self.limits.get_mut(&h) {
                entry.1 = Some(tat);
            }
        }
        Ok(picked
            .into_iter()
            .filter_map(|id| self.tasks.get(&id))
            .map(|e| Reserved {
                lease: Lease::new(e.record.id, e.token),
                queue: e.record.queue.clone(),
                handler: e.record.handler.clone(),
                payload: e.record.payload.clone(),
                attempt: e.record.attempts,
                max_attempts: e.record.max_attempts,
                timeout: e.timeout,
                ordering_key: e.record.ordering_key.clone(),
                enqueued_at: e.record.created_at,
                due_at: e.record.run_at,
                lease_until: e.lease_until,
                trace: e.record.trace.clone(),
            })
            .collect())
    }

    /// Extends each still-held lease to `until`; false for the ones lost.
    pub(crate) fn renew(&mut self, leases: &[Lease], until: Timestamp) -> Vec<bool> {
        leases
            .iter()
            .map(|l| {
                if !self.lease_matches(l) {
                    return false;
                }
                let id = l.id.0;
                let old = self.tasks.get(&id).map(|e| e.lease_until);
                if let Some(old) = old {
                    self.leases.remove(&(old, id));
                }
                self.leases.insert((until, id));
                if let Some(e) = self.tasks.get_mut(&id) {
                    e.lease_until = until;
                }
                true
            })
            .collect()
    }

    /// Applies each report whose lease is still held, with its follow-ups
    /// (under the same lock: all of them or, for a refused report, none).
    pub(crate) fn finish(&mut self, reports: Vec<Finish>, now: Timestamp) -> Finished {
        let mut woke = false;
        let mut done = Vec::new();
        let out = reports
            .into_iter()
            .map(|r| {
                if !self.lease_matches(&r.lease) {
                    return Err(Error::StaleLease(r.lease.id));
                }
                r.validate_follow_ups()?;
                let id = r.lease.id.0;
                let Some(e) = self.tasks.get_mut(&id) else {
                    return Err(Error::NotFound(r.lease.id));
                };
                // The attempt's outcome, appended to the history (a success
                // stays in the task's own fields).
                let (t, outcome) = match r.action {
                    FinishAction::Complete { result } => {
                        e.record.result = result;
                        // An earlier attempt's error is history now.
                        e.record.error = None;
                        (Transition::Complete, None)
                    }
                    FinishAction::Retry { delay, error } => {
                        e.record.error = Some(error.clone());
                        if e.record.attempts >= e.record.max_attempts {
                            (
                                Transition::DeadLetter,
                                Some(AttemptOutcome::DeadLettered { error }),
                            )
                        } else {
                            e.record.run_at = now.plus(delay);
                            (Transition::Retry, Some(AttemptOutcome::Failed { error }))
                        }
                    }
                    FinishAction::DeadLetter { error } => {
                        e.record.error = Some(error.clone());
                        (
                            Transition::DeadLetter,
                            Some(AttemptOutcome::DeadLettered { error }),
                        )
                    }
                    FinishAction::Discard { reason } => {
                        e.record.error = Some(reason.clone());
                        (
                            Transition::Discard,
                            Some(AttemptOutcome::Discarded { reason }),
                        )
                    }
                    FinishAction::Release => {
                        woke = true;
                        (Transition::Release, Some(AttemptOutcome::Released))
                    }
                };
                if let Some(outcome) = outcome {
                    e.settle_attempt(outcome, now);
                }
                if t == Transition::Release {
                    e.record.attempts = e.record.attempts.saturating_sub(1);
                }
                self.move_task(id, t, now)?;
                if t.target().is_finished() {
                    if let Some(e) = self.tasks.get_mut(&id) {
                        e.record.expires_at = Retention::expiry(
                            r.retention.as_ref(),
                            e.record.keep,
                            e.record.state,
                            now,
                        );
                    }
                    done.push(r.lease.id);
                }
                if !r.follow_ups.is_empty() {
                    self.enqueue(r.follow_ups, now);
                    woke = true;
                }
                Ok(())
            })
            .collect();
        Finished { out, woke, done }
    }

    /// Cancels a waiting or running task (a running one's attempt settled
    /// as cancelled, its lease ended); a finished task keeps its state,
    /// which is returned.
    pub(crate) fn cancel(&mut self, id: TaskId, now: Timestamp) -> Result<TaskState, Error> {
        let e = self.tasks.get_mut(&id.0).ok_or(Error::NotFound(id))?;
        let state = e.record.state;
        if Transition::Cancel.apply(state).is_err() {
            return Ok(state);
        }
        if state == TaskState::Running {
            e.settle_attempt(AttemptOutcome::Cancelled, now);
            e.record.error = Some(CANCELLED_WHILE_RUNNING.to_string());
        }
        self.move_task(id.0, Transition::Cancel, now)?;
        Ok(TaskState::Cancelled)
    }

    /// Hands out again (or dead-letters, on the last attempt) every running task
    /// whose lease ran out before `now`; returns how many, and the ones that
    /// died.
    pub(crate) fn recover_expired(&mut self, now: Timestamp) -> Result<(u64, Vec<TaskId>), Error> {
        let mut died = Vec::new();
        let expired: Vec<u64> = self.leases.range(..(now, 0)).map(|&(_, id)| id).collect();
        for &id in &expired {
            let last = self
                .tasks
                .get(&id)
                .is_some_and(|e| e.record.attempts >= e.record.max_attempts);
            let (t, msg) = if last {
                (Transition::ExpireFinal, "lease expired on the last attempt")
            } else {
                (Transition::Expire, "lease expired")
            };
            if let Some(e) = self.tasks.get_mut(&id) {
                e.settle_attempt(AttemptOutcome::LeaseExpired, now);
                e.record.error = Some(msg.to_string());
                e.record.run_at = now;
            }
            self.move_task(id, t, now)?;
            if last {
                died.push(TaskId(id));
            }
        }
        Ok((expired.len() as u64, died))
    }
}
