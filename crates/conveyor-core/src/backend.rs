//! The contract every durable backend implements.
//!
//! Calls are batch-first (enqueue many, reserve up to N, renew and finish many)
//! because a durable store pays per round trip or per fsync, not per task. The
//! runtime's worker and client are written against this trait alone, so a
//! backend is done when it passes the conformance suite in `conveyor-testkit`.
//!
//! Semantics every backend keeps (or declares missing in its [`Capabilities`] and
//! answers with [`Error::Unsupported`], never a silent no-op):
//! - states move only along [`Transition`](crate::Transition) edges;
//! - reserving increments the attempt count and issues a fresh lease token;
//!   reports carrying a stale token are refused with [`Error::StaleLease`];
//! - a task whose lease runs out becomes available again (or dead, on its last
//!   attempt) when [`Backend::recover_expired`] runs;
//! - within a queue, reservation order is priority (higher first), then enqueue
//!   order; queues are scanned in the order the caller gives;
//! - tasks that share an ordering key (per queue) start one at a time in enqueue
//!   order: a task is reserved only when it is the key's oldest unfinished task
//!   and no task of the key is running (a requeued dead task may be older than
//!   one that runs);
//! - a unique key maps to at most one unfinished task per queue; requeueing a
//!   dead task whose key another unfinished task holds leaves it dead;
//! - a lease past its expiry that has not been recovered yet is still the
//!   holder's: renewing or reporting with it succeeds (no one else can hold the
//!   task until `recover_expired` runs);
//! - a task's `error` keeps the last error it had, even once it completes;
//! - with [`Capabilities::handler_limits`], `reserve` honours every handler's
//!   stored [`HandlerLimits`] across all workers: it skips a task whose handler
//!   has as many tasks running as its concurrency allows, or whose rate (GCRA,
//!   state kept in the backend) allows no start yet. A skipped task stays ready
//!   and keeps its place among its handler's tasks; other handlers' tasks behind
//!   it are still reserved. Limits apply to reservations that begin after
//!   [`Backend::set_limits`] returns; a rate start is spent at reservation (a
//!   released task does not give it back).

use std::time::Duration;

use async_trait::async_trait;

use crate::durable_task::{Enqueued, Finish, Lease, NewTask, QueueStats, Reserved, TaskRecord};
use crate::limits::HandlerLimits;
use crate::task::TaskId;
use crate::task_state::TaskState;
use crate::Error;

/// What a backend can do. Operations outside it return [`Error::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Tasks survive a restart of the process (and of the machine).
    pub durable: bool,
    /// Several processes may share the backend.
    pub shared: bool,
    /// Priorities order reservations.
    pub priority: bool,
    /// Delayed and scheduled tasks.
    pub delay: bool,
    /// Unique keys.
    pub unique_keys: bool,
    /// Ordering keys.
    pub ordering_keys: bool,
    /// Results are stored and readable with [`Backend::get`].
    pub results: bool,
    /// Waiting tasks can be cancelled.
    pub cancel: bool,
    /// Tasks can be listed by state, dead tasks requeued and purged.
    pub admin: bool,
    /// [`Backend::wait_for_work`] wakes on new work — at least work made by this
    /// process; workers still poll for the rest.
    pub wakeups: bool,
    /// Per-handler concurrency and rate limits stored in the backend and
    /// enforced by `reserve` for every worker ([`Backend::set_limits`]).
    pub handler_limits: bool,
}

impl Capabilities {
    /// Everything supported.
    pub const ALL: Capabilities = Capabilities {
        durable: true,
        shared: true,
        priority: true,
        delay: true,
        unique_keys: true,
        ordering_keys: true,
        results: true,
        cancel: true,
        admin: true,
        wakeups: true,
        handler_limits: true,
    };
}

/// How long finished tasks are kept before [`Backend::prune`] deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Completed and cancelled tasks (and their results).
    pub finished: Duration,
    /// Dead-lettered tasks (kept longer, for inspection and requeueing).
    pub dead: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            finished: Duration::from_secs(24 * 3600),
            dead: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A durable task queue store. See the module documentation for the semantics.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's kind: `memory`, `embedded`, `redis`, …
    fn kind(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Enqueues tasks atomically (all or none), returning one [`Enqueued`] per task
    /// in order.
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error>;

    /// Reserves up to `max` ready tasks from `queues` (scanned in the given order)
    /// under a lease of `lease`, promoting due scheduled and retrying tasks first.
    async fn reserve(
        &self,
        queues: &[String],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Reserved>, Error>;

    /// Extends leases to `lease` from now; `false` for a lease no longer held.
    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error>;

    /// Applies reports, each on its own: an item fails with
    /// [`Error::StaleLease`] when its token is no longer the task's. The outer
    /// error is the store failing as a whole (nothing applied).
    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error>;

    /// Cancels a waiting task. Returns the task's state afterwards: `Cancelled`,
    /// or the state that made cancelling impossible (running or finished).
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error>;

    /// Reads a task, with its result or last error.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error>;

    /// Maintenance: tasks whose lease has run out become available again, or
    /// dead on their last attempt. Returns how many were recovered.
    async fn recover_expired(&self) -> Result<u64, Error>;

    /// Maintenance: deletes finished tasks older than the retention. Returns how
    /// many were deleted.
    async fn prune(&self, retention: Retention) -> Result<u64, Error>;

    /// Counts per queue and state.
    async fn stats(&self) -> Result<Vec<QueueStats>, Error>;

    /// Tasks in `state`, oldest first, optionally of one queue.
    async fn list(
        &self,
        queue: Option<&str>,
        state: TaskState,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, Error>;

    /// Puts dead tasks back to run (attempt count reset). Returns how many moved.
    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error>;

    /// Deletes dead tasks, optionally of one queue. Returns how many.
    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error>;

    /// Stores `handler`'s global limits (replacing what was stored: the last
    /// writer wins; a record with no limit removes them). Workers call it at
    /// startup from their handler configuration. The rate's state (the time of
    /// the next allowed start) is kept when the limits change. Without
    /// [`Capabilities::handler_limits`] this is [`Error::Unsupported`].
    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        let _ = (handler, limits);
        Err(unsupported(self.kind(), "global handler limits"))
    }

    /// Every stored handler limit, by handler name. Without
    /// [`Capabilities::handler_limits`] this is [`Error::Unsupported`].
    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        Err(unsupported(self.kind(), "global handler limits"))
    }

    /// Enqueues one task.
    async fn enqueue(&self, task: NewTask) -> Result<Enqueued, Error> {
        let mut out = self.enqueue_many(vec![task]).await?;
        out.pop()
            .ok_or_else(|| Error::Backend("enqueue returned nothing".into()))
    }

    /// Waits up to `timeout` for a sign that `queues` may have new work. Returns
    /// `true` when it waited (woken or timed out), `false` at once when the
    /// backend has no wake-ups ([`Capabilities::wakeups`] unset): the caller then
    /// sleeps its poll interval itself.
    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        let _ = (queues, timeout);
        false
    }
}

/// A refusal for operations a backend does not support.
pub fn unsupported(backend: &str, what: &str) -> Error {
    Error::Unsupported(format!("the {backend} backend does not support {what}"))
}
