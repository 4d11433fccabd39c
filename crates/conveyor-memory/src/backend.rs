//! The public handle, [`MemoryBackend`], and its [`Backend`] implementation:
//! each call reads the clock, takes the one lock, runs the matching operation
//! on the state, and wakes idle workers when work became available.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use conveyor_core::schedule::{Fired, Schedule, ScheduleRecord};
use conveyor_core::workflow::{
    Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowSummary,
};
use conveyor_core::{
    async_trait, Administration, Backend, Capabilities, Clock, Enqueued, Error, Finish,
    FinishBoard, FinishMark, GlobalLimits, HandlerLimits, Inspection, Lease, ListParams,
    Maintenance, NewTask, QueueControl, QueueStats, ReserveParams, Reserved, ResultStore,
    Retention, Schedules, SystemClock, TaskId, TaskRecord, TaskState, Timestamp, Workflows,
};

use crate::state::State;

/// An in-process durable-contract backend (not durable across restarts).
///
/// Clones share the same tasks.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    pub(crate) state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    work: Arc<Notify>,
    /// Where tasks that reach a final state are posted, for result waiters.
    finished: Arc<FinishBoard>,
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
            state: Arc::new(Mutex::new(State::default())),
            clock,
            work: Arc::new(Notify::new()),
            finished: Arc::new(FinishBoard::new()),
        }
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
        let out = self.state.lock().enqueue(tasks, now);
        self.work.notify_waiters();
        Ok(out)
    }

    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        let now = self.clock.now();
        self.state.lock().reserve(params, now)
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        let until = self.clock.now().plus(lease);
        Ok(self.state.lock().renew(leases, until))
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        let now = self.clock.now();
        let (done, flowed) = {
            let mut state = self.state.lock();
            let done = state.finish(reports, now);
            (done, state.take_flow_wake())
        };
        if done.woke || flowed {
            self.work.notify_waiters();
        }
        self.finished.post(done.done);
        Ok(done.out)
    }

    async fn wait_for_work(&self, _queues: &[String], timeout: Duration) -> bool {
        let _ = tokio::time::timeout(timeout, self.work.notified()).await;
        true
    }

    conveyor_core::own_parts!(all);
    conveyor_core::own_parts!(workflows, schedules);
}

#[async_trait]
impl Schedules for MemoryBackend {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<ScheduleRecord, Error> {
        let now = self.clock.now();
        Ok(self.state.lock().put_schedule(schedule, now))
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool, Error> {
        Ok(self.state.lock().schedules.remove(name).is_some())
    }

    async fn pause_schedule(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<ScheduleRecord>, Error> {
        let now = self.clock.now();
        Ok(self.state.lock().pause_schedule(name, paused, now))
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, Error> {
        Ok(self.state.lock().schedules.get(name).cloned())
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
        Ok(self.state.lock().schedules.values().cloned().collect())
    }

    async fn next_fire(&self) -> Result<Option<Timestamp>, Error> {
        let state = self.state.lock();
        let due = state.schedules.values().filter(|k| !k.paused);
        Ok(due.filter_map(|k| k.next_fire).min())
    }

    async fn fire_due(&self, now: Timestamp) -> Result<Vec<Fired>, Error> {
        let fired = self.state.lock().fire_due(now);
        if !fired.is_empty() {
            self.work.notify_waiters();
        }
        Ok(fired)
    }

    async fn trigger_schedule(&self, name: &str) -> Result<Option<TaskId>, Error> {
        let now = self.clock.now();
        let task = self.state.lock().trigger_schedule(name, now);
        if task.is_some() {
            self.work.notify_waiters();
        }
        Ok(task)
    }
}

#[async_trait]
impl Workflows for MemoryBackend {
    async fn submit(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        let now = self.clock.now();
        let submitted = self.state.lock().submit_workflow(spec, now)?;
        self.work.notify_waiters();
        Ok(submitted)
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error> {
        Ok(self.state.lock().workflow(id))
    }

    async fn cancel_workflow(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        let now = self.clock.now();
        let Some((nodes, tasks)) = self.state.lock().cancel_workflow(id, now)? else {
            return Ok(None);
        };
        self.finished.post(tasks);
        Ok(Some(nodes))
    }

    async fn retry_workflow(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        let now = self.clock.now();
        let retried = self.state.lock().retry_workflow(id, now)?;
        self.work.notify_waiters();
        Ok(retried)
    }

    async fn list_workflows(&self, filter: &WorkflowFilter) -> Result<Vec<WorkflowSummary>, Error> {
        Ok(self.state.lock().list_workflows(filter))
    }
}

#[async_trait]
impl ResultStore for MemoryBackend {
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        Ok(self.state.lock().get(id))
    }

    async fn finish_mark(&self) -> Option<FinishMark> {
        Some(self.finished.mark())
    }

    async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) -> bool {
        // Every finish, cancel and lease recovery posts the tasks it finished.
        let _ = tokio::time::timeout(timeout, self.finished.wait(id, since)).await;
        true
    }
}

#[async_trait]
impl Inspection for MemoryBackend {
    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        let now = self.clock.now();
        Ok(self.state.lock().stats(now))
    }

    async fn list(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        Ok(self.state.lock().list(params))
    }
}

#[async_trait]
impl Administration for MemoryBackend {
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        let now = self.clock.now();
        let (state, flowed) = {
            let mut s = self.state.lock();
            (s.cancel(id, now), s.take_flow_wake())
        };
        if matches!(state, Ok(TaskState::Cancelled)) {
            self.finished.post([id]);
        }
        if flowed {
            self.work.notify_waiters();
        }
        state
    }

    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        let now = self.clock.now();
        let moved = self.state.lock().requeue_dead(ids, now)?;
        if moved > 0 {
            self.work.notify_waiters();
        }
        Ok(moved)
    }

    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        Ok(self.state.lock().purge_dead(queue))
    }
}

#[async_trait]
impl Maintenance for MemoryBackend {
    async fn recover_expired(&self) -> Result<u64, Error> {
        let now = self.clock.now();
        let ((recovered, died), flowed) = {
            let mut s = self.state.lock();
            (s.recover_expired(now)?, s.take_flow_wake())
        };
        if recovered > died.len() as u64 || flowed {
            self.work.notify_waiters();
        }
        self.finished.post(died);
        Ok(recovered)
    }

    async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        let now = self.clock.now();
        Ok(self.state.lock().prune(retention, now))
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let leads = match state.leaders.get(role) {
            Some((current, until)) => current == holder || *until <= now,
            None => true,
        };
        if leads {
            state
                .leaders
                .insert(role.to_string(), (holder.to_string(), now.plus(ttl)));
        }
        Ok(leads)
    }
}

#[async_trait]
impl GlobalLimits for MemoryBackend {
    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        limits.validate()?;
        self.state.lock().set_limits(handler, limits);
        Ok(())
    }

    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        Ok(self.state.lock().limits())
    }
}

#[async_trait]
impl QueueControl for MemoryBackend {
    async fn pause(&self, queue: &str) -> Result<bool, Error> {
        conveyor_core::validate_queue_name(queue)?;
        Ok(self.state.lock().paused.insert(queue.to_string()))
    }

    async fn resume(&self, queue: &str) -> Result<bool, Error> {
        conveyor_core::validate_queue_name(queue)?;
        let resumed = self.state.lock().paused.remove(queue);
        if resumed {
            self.work.notify_waiters();
        }
        Ok(resumed)
    }

    async fn paused(&self) -> Result<Vec<String>, Error> {
        Ok(self.state.lock().paused.iter().cloned().collect())
    }
}
