//! The memory backend's state: every task in one map plus the small indexes
//! that keep each operation a few ordered-set steps rather than a scan (ready
//! tasks per queue in priority order, timers, running leases, unique and
//! ordering keys, running counts per handler).
//!
//! Every state change goes through [`State::move_task`], which applies a core
//! [`Transition`] and keeps the indexes in step with it, so the operations in
//! `queue_ops` and `admin_ops` never touch an index by hand for a move.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use conveyor_core::attempt::{clip_error, full_history, LatestAttempt, HISTORY_LIMIT};
use conveyor_core::{
    AttemptOutcome, AttemptRecord, Error, HandlerLimits, Lease, TaskId, TaskRecord, TaskState,
    Timestamp, Transition,
};

/// A task as the memory backend holds it. Its record's `history` holds the
/// settled attempts only; the latest attempt's worker and start are kept
/// here, as the stores keep them in the task's row.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) record: TaskRecord,
    pub(crate) timeout: Option<Duration>,
    pub(crate) token: u64,
    pub(crate) lease_until: Timestamp,
    /// The worker of the latest attempt.
    pub(crate) worker: Option<String>,
    /// When the latest attempt was reserved.
    pub(crate) started_at: Option<Timestamp>,
}

impl Entry {
    /// The task as read back: its record with its whole history.
    pub(crate) fn read(&self) -> TaskRecord {
        let mut rec = self.record.clone();
        rec.history = full_history(std::mem::take(&mut rec.history), self.latest());
        rec
    }

    fn latest(&self) -> LatestAttempt<'_> {
        LatestAttempt {
            state: self.record.state,
            attempts: self.record.attempts,
            worker: self.worker.as_deref(),
            started_at: self.started_at,
            finished_at: self.record.finished_at,
        }
    }

    /// Appends the latest attempt to the settled history, ended at `now` as
    /// `outcome` (its error clipped), keeping the latest [`HISTORY_LIMIT`].
    pub(crate) fn settle_attempt(&mut self, outcome: AttemptOutcome, now: Timestamp) {
        let Some(started_at) = self.started_at else {
            return;
        };
        let clip = |t: String| clip_error(&t).to_string();
        let outcome = match outcome {
            AttemptOutcome::Failed { error } => AttemptOutcome::Failed { error: clip(error) },
            AttemptOutcome::DeadLettered { error } => {
                AttemptOutcome::DeadLettered { error: clip(error) }
            }
            AttemptOutcome::Discarded { reason } => AttemptOutcome::Discarded {
                reason: clip(reason),
            },
            other => other,
        };
        let history = &mut self.record.history;
        history.push(AttemptRecord {
            attempt: self.record.attempts,
            worker: self.worker.clone(),
            started_at,
            ended_at: Some(now),
            outcome,
        });
        let over = history.len().saturating_sub(HISTORY_LIMIT);
        history.drain(..over);
    }
}

/// A (queue, key) pair: unique and ordering keys are per queue.
pub(crate) type QueueKey = (String, String);

/// Everything the backend holds, behind its one mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) next_id: u64,
    pub(crate) tasks: HashMap<u64, Entry>,
    /// Available tasks per queue: (higher priority first, then id).
    pub(crate) ready: HashMap<String, BTreeSet<(Reverse<i32>, u64)>>,
    /// Scheduled and retrying tasks by run-at.
    pub(crate) timers: BTreeSet<(Timestamp, u64)>,
    /// Running tasks by lease expiry.
    pub(crate) leases: BTreeSet<(Timestamp, u64)>,
    /// Unfinished task per (queue, unique key).
    pub(crate) unique: HashMap<QueueKey, u64>,
    /// Unfinished tasks per (queue, ordering key), in enqueue order.
    pub(crate) ordering: HashMap<QueueKey, BTreeSet<u64>>,
    /// Running tasks per handler (for global handler limits).
    pub(crate) running: HashMap<String, u64>,
    /// Global handler limits and each one's rate state (TAT, µs).
    pub(crate) limits: BTreeMap<String, (HandlerLimits, Option<i64>)>,
    /// The leader of each role and the end of its term.
    pub(crate) leaders: HashMap<String, (String, Timestamp)>,
    /// Each worker's latest heartbeat, by worker id.
    pub(crate) workers: HashMap<String, conveyor_core::WorkerInfo>,
    /// Paused queues: `reserve` skips them.
    pub(crate) paused: BTreeSet<String>,
    /// Workflows, by id.
    pub(crate) flows: HashMap<u64, crate::workflow_ops::Flow>,
    /// The workflow and node of each node's task.
    pub(crate) flow_of: HashMap<u64, (u64, usize)>,
    /// The next workflow's id.
    pub(crate) next_workflow: u64,
    /// A workflow enqueued tasks since workers were last woken.
    pub(crate) flow_woke: bool,
    /// Schedules, by name.
    pub(crate) schedules: BTreeMap<String, conveyor_core::schedule::ScheduleRecord>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            next_id: 1,
            tasks: HashMap::new(),
            ready: HashMap::new(),
            timers: BTreeSet::new(),
            leases: BTreeSet::new(),
            unique: HashMap::new(),
            ordering: HashMap::new(),
            running: HashMap::new(),
            limits: BTreeMap::new(),
            leaders: HashMap::new(),
            workers: HashMap::new(),
            paused: BTreeSet::new(),
            flows: HashMap::new(),
            flow_of: HashMap::new(),
            next_workflow: 1,
            flow_woke: false,
            schedules: BTreeMap::new(),
        }
    }
}

impl State {
    /// Moves a task along one edge, keeping every index in step.
    pub(crate) fn move_task(
        &mut self,
        id: u64,
        t: Transition,
        now: Timestamp,
    ) -> Result<(), Error> {
        let entry = self.tasks.get_mut(&id).ok_or(Error::NotFound(TaskId(id)))?;
        let from = entry.record.state;
        let to = t
            .apply(from)
            .map_err(|e| Error::backend_other(format!("task {id}: {e}")))?;
        let rec = &mut entry.record;
        match from {
            TaskState::Available => {
                if let Some(set) = self.ready.get_mut(&rec.queue) {
                    set.remove(&(Reverse(rec.priority), id));
                }
            }
            TaskState::Scheduled | TaskState::Retrying => {
                self.timers.remove(&(rec.run_at, id));
            }
            TaskState::Running => {
                self.leases.remove(&(entry.lease_until, id));
                if let Some(n) = self.running.get_mut(&rec.handler) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.running.remove(&rec.handler);
                    }
                }
            }
            _ => {}
        }
        rec.state = to;
        match to {
            TaskState::Available => {
                self.ready
                    .entry(rec.queue.clone())
                    .or_default()
                    .insert((Reverse(rec.priority), id));
            }
            TaskState::Scheduled | TaskState::Retrying => {
                self.timers.insert((rec.run_at, id));
            }
            TaskState::Running => {
                self.leases.insert((entry.lease_until, id));
                *self.running.entry(rec.handler.clone()).or_default() += 1;
            }
            TaskState::Completed | TaskState::Dead | TaskState::Cancelled => {
                rec.finished_at = Some(now);
                // A report's retention may stamp a later expiry over this.
                rec.expires_at = rec.keep.map(|k| now.plus(k));
                let queue = rec.queue.clone();
                if let Some(k) = &rec.unique_key {
                    let key = (queue.clone(), k.clone());
                    if self.unique.get(&key) == Some(&id) {
                        self.unique.remove(&key);
                    }
                }
                if let Some(k) = &rec.ordering_key {
                    let key = (queue, k.clone());
                    if let Some(set) = self.ordering.get_mut(&key) {
                        set.remove(&id);
                        if set.is_empty() {
                            self.ordering.remove(&key);
                        }
                    }
                }
                self.settle_node_of(id, to, now);
            }
        }
        Ok(())
    }

    /// Registers a task's keys: a new task's, or a requeued dead task's again.
    pub(crate) fn rejoin_keys(&mut self, id: u64) {
        let Some(entry) = self.tasks.get(&id) else {
            return;
        };
        let rec = &entry.record;
        if let Some(k) = &rec.unique_key {
            self.unique
                .entry((rec.queue.clone(), k.clone()))
                .or_insert(id);
        }
        if let Some(k) = &rec.ordering_key {
            self.ordering
                .entry((rec.queue.clone(), k.clone()))
                .or_default()
                .insert(id);
        }
    }

    /// Makes every scheduled or retrying task whose time has come available.
    pub(crate) fn promote_due(&mut self, now: Timestamp) {
        let due: Vec<u64> = self
            .timers
            .range(..=(now, u64::MAX))
            .map(|&(_, id)| id)
            .collect();
        for id in due {
            let _ = self.move_task(id, Transition::Due, now);
        }
    }

    /// True when the task may start now as far as its ordering key goes: it is
    /// the key's oldest unfinished task and no task of the key runs (a requeued
    /// dead task can be older than one that runs).
    pub(crate) fn heads_its_key(&self, rec: &TaskRecord) -> bool {
        let Some(k) = &rec.ordering_key else {
            return true;
        };
        let Some(set) = self.ordering.get(&(rec.queue.clone(), k.clone())) else {
            return true;
        };
        set.first() == Some(&rec.id.0)
            && !set.iter().any(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|e| e.record.state == TaskState::Running)
            })
    }

    /// True when `lease` is the running task's current one.
    pub(crate) fn lease_matches(&self, lease: &Lease) -> bool {
        self.tasks
            .get(&lease.id.0)
            .is_some_and(|e| e.record.state == TaskState::Running && e.token == lease.token)
    }
}
