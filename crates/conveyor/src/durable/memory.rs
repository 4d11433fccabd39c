//! The memory backend: the reference implementation of the durable contract and
//! the test double for code that uses one.
//!
//! Everything lives in one mutex-guarded map with small indexes (ready tasks per
//! queue in priority order, timers, running leases, unique and ordering keys), so
//! each operation is a few ordered-set steps rather than a scan. Every state
//! change goes through [`Transition::apply`]. Nothing survives the process; use
//! the embedded backend for that.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use conveyor_core::{
    async_trait, Admission, Backend, Capabilities, Clock, Enqueued, Error, Finish, FinishAction,
    HandlerLimits, Lease, NewTask, QueueStats, Reserved, Retention, SystemClock, TaskId,
    TaskRecord, TaskState, Timestamp, Transition,
};

/// A task as the memory backend holds it.
#[derive(Debug, Clone)]
struct Entry {
    record: TaskRecord,
    timeout: Option<Duration>,
    token: u64,
    lease_until: Timestamp,
}

type QueueKey = (String, String);

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    tasks: HashMap<u64, Entry>,
    /// Available tasks per queue: (higher priority first, then id).
    ready: HashMap<String, BTreeSet<(Reverse<i32>, u64)>>,
    /// Scheduled and retrying tasks by run-at.
    timers: BTreeSet<(Timestamp, u64)>,
    /// Running tasks by lease expiry.
    leases: BTreeSet<(Timestamp, u64)>,
    /// Unfinished task per (queue, unique key).
    unique: HashMap<QueueKey, u64>,
    /// Unfinished tasks per (queue, ordering key), in enqueue order.
    ordering: HashMap<QueueKey, BTreeSet<u64>>,
    /// Running tasks per handler (for global handler limits).
    running: HashMap<String, u64>,
    /// Global handler limits and each one's rate state (TAT, µs).
    limits: BTreeMap<String, (HandlerLimits, Option<i64>)>,
}

/// An in-process durable-contract backend (not durable across restarts).
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    work: Arc<Notify>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty backend on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty backend reading time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                next_id: 1,
                ..State::default()
            })),
            clock,
            work: Arc::new(Notify::new()),
        }
    }
}

impl State {
    /// Moves a task along one edge, keeping every index in step.
    fn move_task(&mut self, id: u64, t: Transition, now: Timestamp) -> Result<(), Error> {
        let entry = self.tasks.get_mut(&id).ok_or(Error::NotFound(TaskId(id)))?;
        let from = entry.record.state;
        let to = t
            .apply(from)
            .map_err(|e| Error::Backend(format!("task {id}: {e}")))?;
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
            }
        }
        Ok(())
    }

    /// Registers a requeued dead task's keys again.
    fn rejoin_keys(&mut self, id: u64) {
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

    fn promote_due(&mut self, now: Timestamp) {
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
    fn heads_its_key(&self, rec: &TaskRecord) -> bool {
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

    fn lease_matches(&self, lease: &Lease) -> bool {
        self.tasks
            .get(&lease.id.0)
            .is_some_and(|e| e.record.state == TaskState::Running && e.token == lease.token)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: false,
            shared: false,
            ..Capabilities::ALL
        }
    }

    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        for t in &tasks {
            t.validate()?;
        }
        let now = self.clock.now();
        let mut out = Vec::with_capacity(tasks.len());
        {
            let mut st = self.state.lock();
            for t in tasks {
                if let Some(k) = &t.unique_key {
                    if let Some(&id) = st.unique.get(&(t.queue.clone(), k.clone())) {
                        out.push(Enqueued {
                            id: TaskId(id),
                            duplicate: true,
                        });
                        continue;
                    }
                }
                let id = st.next_id;
                st.next_id += 1;
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
                };
                match record.state {
                    TaskState::Available => {
                        st.ready
                            .entry(record.queue.clone())
                            .or_default()
                            .insert((Reverse(record.priority), id));
                    }
                    _ => {
                        st.timers.insert((run_at, id));
                    }
                }
                st.tasks.insert(
                    id,
                    Entry {
                        record,
                        timeout: t.timeout,
                        token: 0,
                        lease_until: Timestamp(0),
                    },
                );
                st.rejoin_keys(id);
                out.push(Enqueued {
                    id: TaskId(id),
                    duplicate: false,
                });
            }
        }
        self.work.notify_waiters();
        Ok(out)
    }

    async fn reserve(
        &self,
        queues: &[String],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Reserved>, Error> {
        let now = self.clock.now();
        let until = now.plus(lease);
        let mut st = self.state.lock();
        st.promote_due(now);
        let mut gate = Admission::new(now);
        for (h, (limits, tat)) in &st.limits {
            let running = st.running.get(h).copied().unwrap_or(0);
            gate.limit(h, *limits, running, *tat);
        }
        let mut picked = Vec::new();
        for q in queues {
            if picked.len() >= max {
                break;
            }
            // Choosing a key's head never makes another task of the key a head
            // within the same call, so the eligible tasks can be picked in one
            // read-only pass that stops as soon as enough are found.
            let want = max - picked.len();
            let chosen: Vec<u64> = match st.ready.get(q) {
                Some(set) => set
                    .iter()
                    .map(|&(_, id)| id)
                    .filter(|id| {
                        st.tasks.get(id).is_some_and(|e| {
                            st.heads_its_key(&e.record) && gate.admit(&e.record.handler)
                        })
                    })
                    .take(want)
                    .collect(),
                None => continue,
            };
            for id in chosen {
                if let Some(e) = st.tasks.get_mut(&id) {
                    e.token += 1;
                    e.lease_until = until;
                    e.record.attempts += 1;
                }
                st.move_task(id, Transition::Reserve, now)?;
                picked.push(id);
            }
        }
        for (h, tat) in gate.moved_rates() {
            if let Some(entry) = st.limits.get_mut(&h) {
                entry.1 = Some(tat);
            }
        }
        Ok(picked
            .into_iter()
            .filter_map(|id| st.tasks.get(&id))
            .map(|e| Reserved {
                lease: Lease {
                    id: e.record.id,
                    token: e.token,
                },
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
            })
            .collect())
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        let until = self.clock.now().plus(lease);
        let mut st = self.state.lock();
        Ok(leases
            .iter()
            .map(|l| {
                if !st.lease_matches(l) {
                    return false;
                }
                let id = l.id.0;
                let old = st.tasks.get(&id).map(|e| e.lease_until);
                if let Some(old) = old {
                    st.leases.remove(&(old, id));
                }
                st.leases.insert((until, id));
                if let Some(e) = st.tasks.get_mut(&id) {
                    e.lease_until = until;
                }
                true
            })
            .collect())
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        let now = self.clock.now();
        let mut released = false;
        let out = {
            let mut st = self.state.lock();
            reports
                .into_iter()
                .map(|r| {
                    if !st.lease_matches(&r.lease) {
                        return Err(Error::StaleLease(r.lease.id));
                    }
                    let id = r.lease.id.0;
                    let Some(e) = st.tasks.get_mut(&id) else {
                        return Err(Error::NotFound(r.lease.id));
                    };
                    let rec = &mut e.record;
                    let t = match r.action {
                        FinishAction::Complete { result } => {
                            rec.result = result;
                            Transition::Complete
                        }
                        FinishAction::Retry { delay, error } => {
                            rec.error = Some(error);
                            if rec.attempts >= rec.max_attempts {
                                Transition::DeadLetter
                            } else {
                                rec.run_at = now.plus(delay);
                                Transition::Retry
                            }
                        }
                        FinishAction::DeadLetter { error } => {
                            rec.error = Some(error);
                            Transition::DeadLetter
                        }
                        FinishAction::Discard { reason } => {
                            rec.error = Some(reason);
                            Transition::Discard
                        }
                        FinishAction::Release => {
                            rec.attempts = rec.attempts.saturating_sub(1);
                            released = true;
                            Transition::Release
                        }
                    };
                    st.move_task(id, t, now)
                })
                .collect()
        };
        if released {
            self.work.notify_waiters();
        }
        Ok(out)
    }

    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        let now = self.clock.now();
        let mut st = self.state.lock();
        let state = st
            .tasks
            .get(&id.0)
            .map(|e| e.record.state)
            .ok_or(Error::NotFound(id))?;
        if Transition::Cancel.apply(state).is_err() {
            return Ok(state);
        }
        st.move_task(id.0, Transition::Cancel, now)?;
        Ok(TaskState::Cancelled)
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        Ok(self.state.lock().tasks.get(&id.0).map(|e| e.record.clone()))
    }

    async fn recover_expired(&self) -> Result<u64, Error> {
        let now = self.clock.now();
        let mut st = self.state.lock();
        let expired: Vec<u64> = st.leases.range(..(now, 0)).map(|&(_, id)| id).collect();
        for &id in &expired {
            let last = st
                .tasks
                .get(&id)
                .is_some_and(|e| e.record.attempts >= e.record.max_attempts);
            let (t, msg) = if last {
                (Transition::ExpireFinal, "lease expired on the last attempt")
            } else {
                (Transition::Expire, "lease expired")
            };
            if let Some(e) = st.tasks.get_mut(&id) {
                e.record.error = Some(msg.to_string());
                e.record.run_at = now;
            }
            st.move_task(id, t, now)?;
        }
        drop(st);
        if !expired.is_empty() {
            self.work.notify_waiters();
        }
        Ok(expired.len() as u64)
    }

    async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        let now = self.clock.now();
        let finished_before = now.minus(retention.finished);
        let dead_before = now.minus(retention.dead);
        let mut st = self.state.lock();
        let before = st.tasks.len();
        st.tasks.retain(|_, e| {
            let Some(at) = e.record.finished_at else {
                return true;
            };
            match e.record.state {
                TaskState::Completed | TaskState::Cancelled => at >= finished_before,
                TaskState::Dead => at >= dead_before,
                _ => true,
            }
        });
        Ok((before - st.tasks.len()) as u64)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        let now = self.clock.now();
        let st = self.state.lock();
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        for e in st.tasks.values() {
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
            if ready && qs.oldest_ready.is_none_or(|t| rec.created_at < t) {
                qs.oldest_ready = Some(rec.created_at);
            }
        }
        Ok(by_queue.into_values().collect())
    }

    async fn list(
        &self,
        queue: Option<&str>,
        state: TaskState,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, Error> {
        let st = self.state.lock();
        let mut out: Vec<TaskRecord> = st
            .tasks
            .values()
            .filter(|e| e.record.state == state && queue.is_none_or(|q| e.record.queue == q))
            .map(|e| e.record.clone())
            .collect();
        out.sort_by_key(|r| r.id);
        out.truncate(limit);
        Ok(out)
    }

    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        let now = self.clock.now();
        let mut moved = 0;
        {
            let mut st = self.state.lock();
            for id in ids {
                let Some(rec) = st.tasks.get(&id.0).map(|e| &e.record) else {
                    continue;
                };
                // A dead task whose unique key another unfinished task holds now
                // stays dead: requeueing it would make two.
                let key_taken = rec
                    .unique_key
                    .as_ref()
                    .is_some_and(|k| st.unique.contains_key(&(rec.queue.clone(), k.clone())));
                if rec.state != TaskState::Dead || key_taken {
                    continue;
                }
                if let Some(e) = st.tasks.get_mut(&id.0) {
                    e.record.attempts = 0;
                    e.record.finished_at = None;
                    e.record.run_at = now;
                }
                st.move_task(id.0, Transition::Requeue, now)?;
                st.rejoin_keys(id.0);
                moved += 1;
            }
        }
        if moved > 0 {
            self.work.notify_waiters();
        }
        Ok(moved)
    }

    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        let mut st = self.state.lock();
        let before = st.tasks.len();
        st.tasks.retain(|_, e| {
            !(e.record.state == TaskState::Dead && queue.is_none_or(|q| e.record.queue == q))
        });
        Ok((before - st.tasks.len()) as u64)
    }

    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        limits.validate()?;
        let mut st = self.state.lock();
        if limits.is_unlimited() {
            st.limits.remove(handler);
        } else {
            let tat = st.limits.get(handler).and_then(|(_, t)| *t);
            st.limits.insert(handler.to_string(), (limits, tat));
        }
        Ok(())
    }

    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        let st = self.state.lock();
        Ok(st
            .limits
            .iter()
            .map(|(h, (l, _))| (h.clone(), *l))
            .collect())
    }

    async fn wait_for_work(&self, _queues: &[String], timeout: Duration) -> bool {
        let _ = tokio::time::timeout(timeout, self.work.notified()).await;
        true
    }
}
