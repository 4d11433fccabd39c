//! The optional parts of a backend, and the helpers on `dyn Backend` that
//! reach them or answer [`Error::Unsupported`].

use std::time::Duration;

use async_trait::async_trait;

use super::{Backend, Count, FinishMark, ListParams, Page, Retention, Search};
use crate::durable_task::{QueueStats, TaskRecord};
use crate::limits::HandlerLimits;
use crate::task::TaskId;
use crate::task_state::TaskState;
use crate::Error;

/// The optional parts of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Part {
    /// [`ResultStore`].
    ResultStore,
    /// [`Inspection`].
    Inspection,
    /// [`Administration`].
    Administration,
    /// [`Maintenance`].
    Maintenance,
    /// [`GlobalLimits`].
    GlobalLimits,
    /// [`Registry`](super::Registry).
    Registry,
    /// [`QueueControl`](super::QueueControl).
    QueueControl,
    /// [`RecordKeeper`](super::RecordKeeper).
    RecordKeeper,
    /// [`Workflows`](super::Workflows).
    Workflows,
    /// [`Schedules`](super::Schedules).
    Schedules,
}

impl Part {
    /// Every part.
    pub const ALL: [Part; 10] = [
        Part::ResultStore,
        Part::Inspection,
        Part::Administration,
        Part::Maintenance,
        Part::GlobalLimits,
        Part::Registry,
        Part::QueueControl,
        Part::RecordKeeper,
        Part::Workflows,
        Part::Schedules,
    ];

    /// What the part does, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Part::ResultStore => "a result store (reading a task and its result)",
            Part::Inspection => "inspection (listing and counting tasks)",
            Part::Administration => "administration (cancel, requeue and purge dead tasks)",
            Part::Maintenance => "maintenance (recovering expired leases, pruning)",
            Part::GlobalLimits => "global handler limits",
            Part::Registry => "a worker registry (workers' heartbeats)",
            Part::QueueControl => "pausing and resuming queues",
            Part::RecordKeeper => "keeping another backend's task records",
            Part::Workflows => "workflows (graphs of tasks moved forward by their finishes)",
            Part::Schedules => "schedules (periodic tasks fired once per fire time)",
        }
    }

    /// The refusal of a `backend` without this part.
    pub fn unsupported(self, backend: &str) -> Error {
        super::unsupported(backend, self.describe())
    }
}

/// Reads tasks and their results.
///
/// A store that can tell when tasks finish answers [`finish_mark`] with a
/// mark and lets a caller wait on it with [`wait_finished`]; one that cannot
/// keeps both defaults, and callers poll [`get`]. Waiting without losing a
/// finish takes three steps, in this order:
///
/// ```ignore
/// loop {
///     let mark = store.finish_mark().await;        // 1. before the read
///     if let Some(done) = finished(store.get(id).await?) {
///         return Ok(done);                           // 2. the read
///     }
///     match mark {                                   // 3. the wait
///         Some(mark) if store.wait_finished(id, mark, pause).await => {}
///         _ => tokio::time::sleep(pause).await,
///     }
/// }
/// ```
///
/// A finish that lands between the read and the wait happened after the
/// mark, so the wait returns at once: nothing is lost in that gap.
///
/// [`finish_mark`]: ResultStore::finish_mark
/// [`wait_finished`]: ResultStore::wait_finished
/// [`get`]: ResultStore::get
#[async_trait]
pub trait ResultStore: Send + Sync {
    /// Reads a task, with its result or last error.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error>;

    /// Starts listening for finished tasks (if the store was not already) and
    /// returns where its finish notifications stand, to pass to
    /// [`ResultStore::wait_finished`]. Take it *before* reading the task.
    /// `None` when the store cannot notify (now or at all): poll instead.
    async fn finish_mark(&self) -> Option<FinishMark> {
        None
    }

    /// Waits up to `timeout` for a sign that task `id` may have finished
    /// since `since` (a mark from [`ResultStore::finish_mark`] of this store):
    /// returns at once when one came after the mark already. Returns `true`
    /// when it waited on a notification (woken, or timed out while listening)
    /// and `false` at once when the store cannot notify: the caller then
    /// polls [`ResultStore::get`] at its own pace. A wake-up may be spurious
    /// (another task, or a listener that reconnected and may have missed
    /// some): the caller reads the task again either way. A finish after
    /// `since` that the store heard of is never missed; one it could not hear
    /// of (another process, for the embedded store) is found by reading again
    /// after the timeout.
    async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) -> bool {
        let _ = (id, since, timeout);
        false
    }
}

/// Lists and counts tasks.
#[async_trait]
pub trait Inspection: Send + Sync {
    /// Tasks matching `params`, in its order (see [`ListParams`] and
    /// [`ListOrder`](super::ListOrder), and each backend's documentation for what "oldest"
    /// means there).
    async fn list(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error>;

    /// Counts per queue and state.
    async fn stats(&self) -> Result<Vec<QueueStats>, Error>;

    /// A page of the tasks `params` lists whose params or error hold
    /// `search` (every one, with `None`), reading at most
    /// [`SCAN_BUDGET`](super::SCAN_BUDGET) candidates: a page that stops at its
    /// budget before it is full says where to go on ([`Page::next`]). The
    /// default lists through [`Inspection::list`] and checks the text here;
    /// a store that can search itself does it there.
    async fn page(&self, params: &ListParams, search: Option<&Search>) -> Result<Page, Error> {
        super::search::page_by_listing(self, params, search).await
    }

    /// How many tasks `params` (its state, queue and handler; not its order,
    /// cursor or limit) and `search` match: exact for state and queue alone
    /// (and, where the store keeps counts per handler, with a handler too),
    /// and otherwise exact when at most [`COUNT_BUDGET`](super::COUNT_BUDGET)
    /// candidates had to be read, a lower bound past that.
    async fn count(&self, params: &ListParams, search: Option<&Search>) -> Result<Count, Error> {
        super::search::count_by_listing(self, params, search).await
    }
}

/// Changes tasks on an operator's request.
#[async_trait]
pub trait Administration: Send + Sync {
    /// Cancels a waiting or running task. Returns the task's state
    /// afterwards: `Cancelled`, or the finished state that made cancelling
    /// impossible.
    ///
    /// A running task's attempt is settled as
    /// [`AttemptOutcome::Cancelled`](crate::AttemptOutcome::Cancelled), its
    /// error set to [`CANCELLED_WHILE_RUNNING`](crate::CANCELLED_WHILE_RUNNING)
    /// and its lease ended in the same step: the worker holding it is told
    /// at once where the store notifies finishes, at its next renewal
    /// otherwise (and stops the attempt: its future dropped, its
    /// process group killed), and its report is refused as a stale lease,
    /// so nothing it does afterwards changes the task. Its finish waiters
    /// are woken, as for any task that finishes.
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error>;

    /// Puts dead tasks back to run (attempt count reset). Returns how many moved.
    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error>;

    /// Deletes dead tasks, optionally of one queue. Returns how many.
    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error>;
}

/// Upkeep a store needs, and the leadership that lets one worker of many do
/// a duty alone. `recover_expired` and `prune` are idempotent, so several
/// workers may run them; [`Maintenance::lead`] is for the duties that must
/// not run everywhere (pruning a large table, firing a periodic task).
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Tasks whose lease has run out become available again, or dead on
    /// their last attempt. Returns how many were recovered.
    async fn recover_expired(&self) -> Result<u64, Error>;

    /// Deletes finished tasks older than the retention. Returns how many were
    /// deleted.
    async fn prune(&self, retention: Retention) -> Result<u64, Error>;

    /// Takes or keeps the lead of `role` for `holder` until `ttl` from now
    /// (the backend's clock), in one atomic step. True when `holder` leads:
    /// it led already (its term is extended), no one led, or the last
    /// leader's term has run out. False while another holder's term lasts.
    /// A leader that stops calling loses the lead when its term ends, so a
    /// killed worker is replaced within `ttl`; at most one holder leads a
    /// role at any time of the backend's clock. A leader that calls with a
    /// `ttl` of zero steps down: another holder may lead at once.
    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool, Error>;
}

/// Per-handler limits held by the backend for every worker sharing it.
#[async_trait]
pub trait GlobalLimits: Send + Sync {
    /// Stores `handler`'s global limits (replacing what was stored: the last
    /// writer wins; a record with no limit removes them). Workers call it at
    /// startup from their handler configuration. The rate's state (the time of
    /// the next allowed start) is kept when the limits change.
    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error>;

    /// Every stored handler limit, by handler name.
    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error>;
}

/// Inside an `impl Backend for T` block, answers the accessors of the parts
/// `T` implements itself with `Some(self)`:
///
/// ```ignore
/// impl Backend for MyBackend {
///     // … the core …
///     conveyor_core::own_parts!(result_store, inspection, administration);
///     // or, for the seven parts of a backend's own tasks (all but the
///     // record keeper): conveyor_core::own_parts!(all);
/// }
/// ```
#[macro_export]
macro_rules! own_parts {
    (all) => {
        $crate::own_parts!(
            result_store,
            inspection,
            administration,
            maintenance,
            global_limits,
            registry,
            queue_control
        );
    };
    ($($part:ident),* $(,)?) => {
        $( $crate::own_parts!(@one $part); )*
    };
    (@one result_store) => {
        fn result_store(&self) -> ::std::result::Result<&dyn $crate::ResultStore, $crate::Error> {
            Ok(self)
        }
    };
    (@one inspection) => {
        fn inspection(&self) -> ::std::result::Result<&dyn $crate::Inspection, $crate::Error> {
            Ok(self)
        }
    };
    (@one administration) => {
        fn administration(&self) -> ::std::result::Result<&dyn $crate::Administration, $crate::Error> {
            Ok(self)
        }
    };
    (@one maintenance) => {
        fn maintenance(&self) -> ::std::result::Result<&dyn $crate::Maintenance, $crate::Error> {
            Ok(self)
        }
    };
    (@one registry) => {
        fn registry(&self) -> ::std::result::Result<&dyn $crate::Registry, $crate::Error> {
            Ok(self)
        }
    };
    (@one record_keeper) => {
        fn record_keeper(&self) -> ::std::result::Result<&dyn $crate::RecordKeeper, $crate::Error> {
            Ok(self)
        }
    };
    (@one queue_control) => {
        fn queue_control(&self) -> ::std::result::Result<&dyn $crate::QueueControl, $crate::Error> {
            Ok(self)
        }
    };
    (@one workflows) => {
        fn workflows(&self) -> ::std::result::Result<&dyn $crate::Workflows, $crate::Error> {
            Ok(self)
        }
    };
    (@one schedules) => {
        fn schedules(&self) -> ::std::result::Result<&dyn $crate::Schedules, $crate::Error> {
            Ok(self)
        }
    };
    (@one global_limits) => {
        fn global_limits(&self) -> ::std::result::Result<&dyn $crate::GlobalLimits, $crate::Error> {
            Ok(self)
        }
    };
}

/// The parts of any backend, or [`Error::Unsupported`] naming what is missing.
impl dyn Backend {
    /// [`ResultStore::get`], or `Unsupported`.
    pub async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        self.result_store()?.get(id).await
    }

    /// [`Inspection::list`], or `Unsupported`.
    pub async fn list(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        self.inspection()?.list(params).await
    }

    /// [`Inspection::stats`], or `Unsupported`.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        self.inspection()?.stats().await
    }

    /// [`Inspection::page`], or `Unsupported`.
    pub async fn page(&self, params: &ListParams, search: Option<&Search>) -> Result<Page, Error> {
        self.inspection()?.page(params, search).await
    }

    /// [`Inspection::count`], or `Unsupported`.
    pub async fn count(
        &self,
        params: &ListParams,
        search: Option<&Search>,
    ) -> Result<Count, Error> {
        self.inspection()?.count(params, search).await
    }

    /// [`Administration::cancel`], or `Unsupported`.
    pub async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        self.administration()?.cancel(id).await
    }

    /// [`Administration::requeue_dead`], or `Unsupported`.
    pub async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        self.administration()?.requeue_dead(ids).await
    }

    /// [`Administration::purge_dead`], or `Unsupported`.
    pub async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        self.administration()?.purge_dead(queue).await
    }

    /// [`Workflows::submit`](super::Workflows::submit), or `Unsupported`.
    pub async fn submit_workflow(
        &self,
        spec: crate::workflow::WorkflowSpec,
    ) -> Result<crate::workflow::Submitted, Error> {
        self.workflows()?.submit(spec).await
    }

    /// [`Workflows::workflow`](super::Workflows::workflow), or `Unsupported`.
    pub async fn workflow(
        &self,
        id: crate::workflow::WorkflowId,
    ) -> Result<Option<crate::workflow::WorkflowRecord>, Error> {
        self.workflows()?.workflow(id).await
    }

    /// [`Workflows::cancel_workflow`](super::Workflows::cancel_workflow), or
    /// `Unsupported`.
    pub async fn cancel_workflow(
        &self,
        id: crate::workflow::WorkflowId,
    ) -> Result<Option<u64>, Error> {
        self.workflows()?.cancel_workflow(id).await
    }

    /// [`Workflows::retry_workflow`](super::Workflows::retry_workflow), or
    /// `Unsupported`.
    pub async fn retry_workflow(
        &self,
        id: crate::workflow::WorkflowId,
    ) -> Result<Option<crate::workflow::Retried>, Error> {
        self.workflows()?.retry_workflow(id).await
    }

    /// [`Workflows::list_workflows`](super::Workflows::list_workflows), or
    /// `Unsupported`.
    pub async fn list_workflows(
        &self,
        filter: &crate::workflow::WorkflowFilter,
    ) -> Result<Vec<crate::workflow::WorkflowSummary>, Error> {
        self.workflows()?.list_workflows(filter).await
    }

    /// [`Maintenance::recover_expired`], or `Unsupported`.
    pub async fn recover_expired(&self) -> Result<u64, Error> {
        self.maintenance()?.recover_expired().await
    }

    /// [`Maintenance::prune`], or `Unsupported`.
    pub async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        self.maintenance()?.prune(retention).await
    }

    /// [`Maintenance::lead`], or `Unsupported`.
    pub async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        self.maintenance()?.lead(role, holder, ttl).await
    }

    /// [`GlobalLimits::set_limits`], or `Unsupported`.
    pub async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        self.global_limits()?.set_limits(handler, limits).await
    }

    /// [`GlobalLimits::limits`], or `Unsupported`.
    pub async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        self.global_limits()?.limits().await
    }

    /// [`QueueControl::pause`](super::QueueControl::pause), or `Unsupported`.
    pub async fn pause_queue(&self, queue: &str) -> Result<bool, Error> {
        self.queue_control()?.pause(queue).await
    }

    /// [`QueueControl::resume`](super::QueueControl::resume), or `Unsupported`.
    pub async fn resume_queue(&self, queue: &str) -> Result<bool, Error> {
        self.queue_control()?.resume(queue).await
    }

    /// [`QueueControl::paused`](super::QueueControl::paused), or `Unsupported`.
    pub async fn paused_queues(&self) -> Result<Vec<String>, Error> {
        self.queue_control()?.paused().await
    }
}
