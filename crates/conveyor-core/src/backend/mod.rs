//! The contract every durable backend implements, split by capability.
//!
//! A small required core, [`Backend`]: enqueue many, reserve up to N, renew
//! and finish many (batch-first, because a durable store pays per round trip
//! or per fsync, not per task). Everything else is an optional **part** a
//! backend implements only when it really can, and hands out through an
//! accessor that answers [`Error::Unsupported`] otherwise:
//!
//! | part | what | accessor |
//! |---|---|---|
//! | [`ResultStore`] | read a task with its result; a push-based wait where the backend can notify ([`FinishMark`], [`FinishBoard`]) | [`Backend::result_store`] |
//! | [`Inspection`] | list tasks ([`ListParams`]: filters, order, keyset paging), search their text within a bounded budget ([`Search`], [`Page`]), counts per queue and state and of any filter ([`Count`]) | [`Backend::inspection`] |
//! | [`Administration`] | cancel waiting tasks, requeue and purge dead ones | [`Backend::administration`] |
//! | [`Maintenance`] | recover expired leases, prune old tasks | [`Backend::maintenance`] |
//! | [`GlobalLimits`] | per-handler concurrency and rate for every worker | [`Backend::global_limits`] |
//! | [`QueueControl`] | pause and resume queues for every worker | [`Backend::queue_control`] |
//! | [`Registry`] | workers' heartbeats, for status and for tasks no live worker serves | [`Backend::registry`] |
//! | [`Workflows`] | graphs of tasks moved forward by their tasks' finishes | [`Backend::workflows`] |
//!
//! Asking for a part a backend lacks is a clear [`Error::Unsupported`]
//! (from its accessor, and from the helpers on `dyn Backend` that use it,
//! e.g. `backend.stats()`), never a
//! silent no-op. A message broker implements the core and what it can; a
//! database implements them all. The conformance suite in `conveyor-testkit`
//! runs each part's cases only where the part exists, and reports the others
//! as ignored with the reason.
//!
//! Semantics every backend keeps (or declares missing in its [`Capabilities`]
//! and answers with [`Error::Unsupported`]):
//! - states move only along [`Transition`](crate::Transition) edges;
//! - reserving increments the attempt count and issues a fresh lease token;
//!   reports carrying a stale token are refused with [`Error::StaleLease`];
//! - a task whose lease runs out becomes available again (or dead, on its last
//!   attempt) when [`Maintenance::recover_expired`] runs;
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
//!   task until [`Maintenance::recover_expired`] runs);
//! - a task's `error` keeps the last error it had, even once it completes;
//! - with [`Capabilities::history`], a task's
//!   [`history`](crate::TaskRecord::history) lists its attempts as the
//!   [`attempt`](crate::attempt) module describes: the worker named in
//!   [`ReserveParams::worker`], the reservation time as its start, the
//!   settlement (or the lease recovery, as "lease expired") as its end;
//! - with the [`GlobalLimits`] part, `reserve` honours every handler's
//!   stored [`HandlerLimits`] across all workers: it skips a task whose handler
//!   has as many tasks running as its concurrency allows, or whose rate (GCRA,
//!   state kept in the backend) allows no start yet. A skipped task stays ready
//!   and keeps its place among its handler's tasks; other handlers' tasks behind
//!   it are still reserved. Limits apply to reservations that begin after
//!   [`GlobalLimits::set_limits`] returns; a rate start is spent at reservation (a
//!   released task does not give it back).
//! - with the [`QueueControl`] part, `reserve` hands out no task of a paused
//!   queue once [`QueueControl::pause`] has returned (see the trait for the
//!   whole promise).

use std::time::Duration;

use async_trait::async_trait;

use crate::durable_task::{Enqueued, Finish, Lease, NewTask, Reserved};
use crate::Error;

mod failover;
mod finish_board;
mod list_params;
mod parts;
mod queue_control;
mod record_keeper;
mod registry;
mod reserve_params;
mod schedules;
mod search;
mod unserved;
mod wait_finish;
mod wake_board;
mod workflows;

pub use failover::{FailoverMode, Kept};
pub use finish_board::{FinishBoard, FinishMark};
pub use list_params::{ListOrder, ListParams};
pub use parts::{Administration, GlobalLimits, Inspection, Maintenance, Part, ResultStore};
pub use queue_control::{validate_queue_name, QueueControl};
pub use record_keeper::{EntryWrite, RecordKeeper};
pub use registry::{
    workers_heard_since, workers_silent_before, Registry, WorkerInfo, FORGET_WORKERS_AFTER,
    WORKER_SILENCE,
};
pub use reserve_params::ReserveParams;
pub use schedules::Schedules;
pub use search::{
    count_by_listing, count_from_stats, page_by_listing, Count, Page, Search, COUNT_BUDGET,
    SCAN_BUDGET,
};
pub use unserved::{unserved, Unserved, UNSERVED_SCAN};
pub use wait_finish::{finished_record, wait_for_finish};
pub use wake_board::WakeBoard;
pub use workflows::Workflows;

/// What a backend's core operations support. Operations outside it return
/// [`Error::Unsupported`]. (Which optional parts a backend has is asked of
/// the part accessors, see [`Backend::parts`].)
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
    /// [`Backend::wait_for_work`] wakes on new work — at least work made by this
    /// process; workers still poll for the rest.
    pub wakeups: bool,
    /// Every attempt's history is kept ([`TaskRecord::history`](crate::TaskRecord::history)):
    /// the worker that ran it, its start and end, how it ended. Without
    /// it the history reads empty.
    pub history: bool,
    /// Finished tasks expire one by one: a task's own
    /// [`NewTask::keep`](crate::NewTask::keep) and the retention a worker's
    /// report carries ([`Finish::retention`](crate::Finish::retention)) are
    /// stamped as its [`TaskRecord::expires_at`](crate::TaskRecord::expires_at),
    /// and [`Maintenance::prune`] deletes it then. Without it, enqueueing a
    /// task with a keep is refused and every finished task is pruned by the
    /// retention `prune` is given.
    pub keep: bool,
    /// The ways of running the store that a test has failed over (or
    /// restarted), and which guarantees each keeps when the primary is lost
    /// (`docs/high-availability.md`); empty for a store inside the process.
    pub failover: &'static [FailoverMode],
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
        wakeups: true,
        history: true,
        keep: true,
        failover: &[],
    };
}

/// How long finished tasks are kept before [`Maintenance::prune`] deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Completed and cancelled tasks (and their results).
    pub finished: Duration,
    /// Dead-lettered tasks (kept longer, for inspection and requeueing).
    pub dead: Duration,
}

impl Retention {
    /// How long a task that finished in `state` is kept: `dead` for a dead
    /// one, `finished` for the others.
    pub fn for_state(&self, state: crate::TaskState) -> Duration {
        if state == crate::TaskState::Dead {
            self.dead
        } else {
            self.finished
        }
    }

    /// When a task that finished in `state` at `finished_at` expires: after
    /// its own `keep` if it has one, else after this retention.
    pub fn expiry(
        retention: Option<&Retention>,
        keep: Option<Duration>,
        state: crate::TaskState,
        finished_at: crate::Timestamp,
    ) -> Option<crate::Timestamp> {
        keep.or_else(|| retention.map(|r| r.for_state(state)))
            .map(|k| finished_at.plus(k))
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            finished: Duration::from_secs(24 * 3600),
            dead: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The required core of a durable task queue store. See the module
/// documentation for the semantics and the optional parts.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's kind: `memory`, `embedded`, `redis`, …
    fn kind(&self) -> &'static str;

    /// What this backend's core operations support.
    fn capabilities(&self) -> Capabilities;

    /// Enqueues tasks atomically (all or none), returning one [`Enqueued`] per task
    /// in order.
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error>;

    /// Reserves up to `params.max` ready tasks from `params.queues` (scanned
    /// in the given order) under a lease of `params.lease`, promoting due
    /// scheduled and retrying tasks first. A backend that keeps history
    /// ([`Capabilities::history`]) records `params.worker` as each attempt's
    /// worker, in the same step; [`ReserveParams::handlers`] says which
    /// handlers' tasks may be taken.
    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error>;

    /// Extends leases to `lease` from now; `false` for a lease no longer held.
    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error>;

    /// Applies reports, each on its own: an item fails with
    /// [`Error::StaleLease`] when its token is no longer the task's. The outer
    /// error is the store failing as a whole (nothing applied).
    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error>;

    /// Enqueues one task.
    async fn enqueue(&self, task: NewTask) -> Result<Enqueued, Error> {
        let mut out = self.enqueue_many(vec![task]).await?;
        out.pop()
            .ok_or_else(|| Error::backend_other("enqueue returned nothing"))
    }

    /// Waits up to `timeout` for a sign that `queues` may have new work. Returns
    /// `true` when it waited (woken or timed out), `false` at once when the
    /// backend has no wake-ups ([`Capabilities::wakeups`] unset): the caller then
    /// sleeps its poll interval itself.
    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        let _ = (queues, timeout);
        false
    }

    /// How many reservations a worker may have out at once to keep this
    /// backend busy (default 1). A store that commits requests arriving
    /// together in one step (group commit), or serves them side by side on
    /// several connections, answers more: a worker then asks for the slots
    /// freed while one reservation is answered at once, not after it.
    fn reserves_in_flight(&self) -> usize {
        1
    }

    /// Whether a worker splits its slots among its reservations out (default
    /// false; read only when [`Backend::reserves_in_flight`] is above 1). A
    /// store that serves reservations one after another, each at a cost per
    /// task (Redis: one server thread), answers true: each reservation then
    /// asks for an even share of the slots at most, so the store serves one
    /// while the worker starts the tasks of the one before, and another goes
    /// out beside one only once a full share of slots is free. A store that
    /// pays per reservation rather than per task (a commit) keeps the
    /// default: every free slot asked for at once.
    fn reserves_split(&self) -> bool {
        false
    }

    /// Says how many tasks the process reserving from this backend runs at
    /// once (a worker's slots), before its first reservation. A backend
    /// that pushes tasks to its consumers (a message broker's prefetch)
    /// sizes its flow control to it, so no more tasks wait in the process
    /// than it has free slots; a backend that hands out tasks only when
    /// asked ignores it (the default).
    fn set_slots(&self, slots: usize) {
        let _ = slots;
    }

    /// Times the backend lost a connection to its server and connected
    /// again since it was opened, for monitoring (a worker exports it as
    /// `conveyor_backend_reconnects_total`). `None` for a backend that holds
    /// no connection to lose (in process, or a file).
    fn reconnects(&self) -> Option<u64> {
        None
    }

    /// The result store part ([`Error::Unsupported`] unless the backend
    /// keeps results).
    fn result_store(&self) -> Result<&dyn ResultStore, Error> {
        Err(Part::ResultStore.unsupported(self.kind()))
    }

    /// The inspection part ([`Error::Unsupported`] unless the backend can
    /// list and count tasks).
    fn inspection(&self) -> Result<&dyn Inspection, Error> {
        Err(Part::Inspection.unsupported(self.kind()))
    }

    /// The administration part ([`Error::Unsupported`] unless the backend
    /// can cancel, requeue and purge).
    fn administration(&self) -> Result<&dyn Administration, Error> {
        Err(Part::Administration.unsupported(self.kind()))
    }

    /// The maintenance part ([`Error::Unsupported`] unless the backend
    /// needs, and has, upkeep).
    fn maintenance(&self) -> Result<&dyn Maintenance, Error> {
        Err(Part::Maintenance.unsupported(self.kind()))
    }

    /// The global limits part ([`Error::Unsupported`] unless the backend
    /// can hold per-handler limits for every worker).
    fn global_limits(&self) -> Result<&dyn GlobalLimits, Error> {
        Err(Part::GlobalLimits.unsupported(self.kind()))
    }

    /// The queue control part ([`Error::Unsupported`] unless the backend
    /// can pause and resume queues for every process sharing it).
    fn queue_control(&self) -> Result<&dyn QueueControl, Error> {
        Err(Part::QueueControl.unsupported(self.kind()))
    }

    /// The worker registry part ([`Error::Unsupported`] unless the backend
    /// can keep workers' heartbeats).
    fn registry(&self) -> Result<&dyn Registry, Error> {
        Err(Part::Registry.unsupported(self.kind()))
    }

    /// The record keeper part ([`Error::Unsupported`] unless the backend
    /// can keep whole task records another backend writes).
    fn record_keeper(&self) -> Result<&dyn RecordKeeper, Error> {
        Err(Part::RecordKeeper.unsupported(self.kind()))
    }

    /// The workflows part ([`Error::Unsupported`] unless the backend can
    /// store a workflow and move it forward atomically with its tasks'
    /// finishes).
    fn workflows(&self) -> Result<&dyn Workflows, Error> {
        Err(Part::Workflows.unsupported(self.kind()))
    }

    /// The schedules part ([`Error::Unsupported`] unless the backend can
    /// keep periodic schedules and enqueue each fire time once, however
    /// many leaders fire at one moment).
    fn schedules(&self) -> Result<&dyn Schedules, Error> {
        Err(Part::Schedules.unsupported(self.kind()))
    }

    /// The optional parts this backend has.
    fn parts(&self) -> Vec<Part> {
        let mut parts = Vec::new();
        let mut have = |yes: bool, part| {
            if yes {
                parts.push(part);
            }
        };
        have(self.result_store().is_ok(), Part::ResultStore);
        have(self.inspection().is_ok(), Part::Inspection);
        have(self.administration().is_ok(), Part::Administration);
        have(self.maintenance().is_ok(), Part::Maintenance);
        have(self.global_limits().is_ok(), Part::GlobalLimits);
        have(self.registry().is_ok(), Part::Registry);
        have(self.queue_control().is_ok(), Part::QueueControl);
        have(self.record_keeper().is_ok(), Part::RecordKeeper);
        have(self.workflows().is_ok(), Part::Workflows);
        have(self.schedules().is_ok(), Part::Schedules);
        parts
    }
}

/// A refusal for operations a backend does not support.
pub fn unsupported(backend: &str, what: &str) -> Error {
    Error::Unsupported(format!("the {backend} backend does not support {what}"))
}

/// What a backend without [`Capabilities::keep`] says when a task comes
/// with a keep of its own.
pub const NO_KEEP: &str =
    "a task's own keep (finished tasks go by the retention the workers prune with)";

/// Refuses `tasks` if one of them has a keep of its own: for a backend
/// without [`Capabilities::keep`].
pub fn refuse_keep<'a>(
    backend: &str,
    tasks: impl IntoIterator<Item = &'a crate::NewTask>,
) -> Result<(), Error> {
    if tasks.into_iter().any(|t| t.keep.is_some()) {
        return Err(unsupported(backend, NO_KEEP));
    }
    Ok(())
}
