//! [`EmbeddedBackend`]: the [`Backend`] contract over one local SQLite file.
//!
//! The handle is a sender to the database thread (`crate::db_thread`) plus the
//! in-process [`Notify`] that wakes waiting workers and the file's
//! [`FinishBoard`] (`crate::process`) that wakes result waiters. Every call packs its
//! arguments into a job, sends it and awaits the reply, so it never blocks the
//! async runtime it is called from. A call whose future is dropped after
//! sending still runs to the end (an enqueue still commits; tasks reserved for
//! nobody come back when their lease runs out).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::schedule::{Fired, Schedule, ScheduleRecord};
use conveyor_core::workflow::{
    Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowSummary,
};
use conveyor_core::{
    async_trait, Administration, Backend, Capabilities, Clock, Count, Enqueued, Error, Finish,
    FinishBoard, FinishMark, GlobalLimits, HandlerLimits, Inspection, Lease, ListParams,
    Maintenance, NewTask, Page, QueueStats, ReserveParams, Reserved, ResultStore, Retention,
    Schedules, Search, SystemClock, TaskId, TaskRecord, TaskState, Timestamp, ValueLimit,
    Workflows,
};
use tokio::sync::{oneshot, Notify};

use crate::db_thread::{self, Call, Listeners, Message};
use crate::store::Store;
use crate::{process, schema};

/// Where [`EmbeddedBackend`] keeps its file when the configuration names none.
pub const DEFAULT_PATH: &str = "./conveyor.db";

/// How long a result waiter waits on this process's finish notifications
/// before reading the task again, unless told otherwise
/// ([`EmbeddedBackend::results_poll`]): how soon a task finished by another
/// process sharing the file is seen.
pub const DEFAULT_RESULTS_POLL: Duration = Duration::from_millis(100);

/// The zero-setup durable backend: every task lives in one local SQLite file in
/// WAL mode, each commit fsynced before the caller hears of it.
///
/// Several processes on one machine may open the same file; they share it
/// under SQLite's locks. [`Backend::wait_for_work`] wakes only on work this
/// process made available (other processes' work is found by polling).
/// [`ResultStore::wait_finished`] wakes at once on a task finished through any
/// handle of this process on the file, and after
/// [`results_poll`](EmbeddedBackend::results_poll) otherwise, so the caller
/// reads again and sees tasks other processes finished.
///
/// ```no_run
/// # async fn demo() -> Result<(), conveyor_core::Error> {
/// use conveyor_core::{Backend, NewTask};
/// use conveyor_embedded::{EmbeddedBackend, DEFAULT_PATH};
///
/// let backend = EmbeddedBackend::open(DEFAULT_PATH)?;
/// let done = backend.enqueue(NewTask::new("send_email", b"{}".to_vec())).await?;
/// println!("enqueued task {}", done.id);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EmbeddedBackend {
    /// The database thread's inbox (the process registry holds it weakly,
    /// to pause the thread around a fork).
    inbox: Arc<Sender<Message>>,
    notify: Arc<Notify>,
    finished: Arc<FinishBoard>,
    results_poll: Duration,
    path: PathBuf,
    /// The most bytes of params or result one task may carry.
    value_limit: ValueLimit,
}

impl EmbeddedBackend {
    /// Opens (creating if needed) the database at `path`, on the system clock.
    ///
    /// Opening does file I/O and waits for the schema check (up to the busy
    /// timeout when another process holds the file's write lock): call it at
    /// startup, not on a hot path.
    pub fn open(path: impl AsRef<Path>) -> Result<EmbeddedBackend, Error> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// Opens the database at `path`, reading "now" from `clock` (a
    /// [`ManualClock`](conveyor_core::ManualClock) in tests).
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<EmbeddedBackend, Error> {
        let path = path.as_ref().to_path_buf();
        let (inbox, rx) = mpsc::channel();
        let inbox = Arc::new(inbox);
        // Registered before the file is opened, so a fork meanwhile waits
        // for the thread to open it and pause (`crate::fork`).
        let finished = process::registry().open(&path, &inbox);
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let notify = Arc::new(Notify::new());
        let listeners = Listeners {
            work: Arc::clone(&notify),
            finished: Arc::clone(&finished),
        };
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("conveyor-embedded".into())
            .spawn(move || match schema::open(&thread_path) {
                Ok(conn) => {
                    let _ = opened_tx.send(Ok(()));
                    db_thread::run(Store::new(conn, clock), thread_path, rx, listeners);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })?;
        opened_rx
            .recv()
            .map_err(|_| Error::backend_other("the database thread stopped while opening"))??;
        tracing::debug!(path = %path.display(), "embedded: opened");
        Ok(EmbeddedBackend {
            inbox,
            notify,
            finished,
            results_poll: DEFAULT_RESULTS_POLL,
            path,
            value_limit: crate::value_limit::limit(),
        })
    }

    /// Refuses params and results over `cap` bytes (a URL's `max_value=`),
    /// below SQLite's own limit ([`EmbeddedBackend::max_value`]).
    pub fn with_max_value(mut self, cap: usize) -> Self {
        self.value_limit = self.value_limit.lowered(Some(cap));
        self
    }

    /// The most bytes one task's params, or one result, may hold here: half
    /// of SQLite's limit for one row (a task's row holds both) less room for
    /// the rest of it, or less ([`EmbeddedBackend::with_max_value`]).
    /// `enqueue` refuses params over it, and `finish` a result over it, for
    /// that report alone, with a non-transient error naming both sizes.
    pub fn max_value(&self) -> usize {
        self.value_limit.max()
    }

    /// How long [`ResultStore::wait_finished`] waits on this process's finish
    /// notifications at most before its caller reads the task again
    /// (default [`DEFAULT_RESULTS_POLL`]): how soon a task finished by
    /// another process sharing the file is seen. A process alone on its file
    /// can raise it, so waiting for a result costs nothing until it is there.
    pub fn results_poll(mut self, every: Duration) -> Self {
        self.results_poll = every;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the backend: requests already sent run, then the connection is
    /// closed. Dropping the backend does the same without waiting.
    pub async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.inbox.send(Message::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Runs `work` on the database thread and awaits its reply.
    pub(crate) async fn call<T, F>(&self, writes: bool, weight: usize, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(Call::new(writes, weight, work, tx));
        self.inbox.send(Message::Job(job)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::backend_other("the embedded backend's database thread has stopped")
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    /// Everything; wakeups come from this process only (workers also poll).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            failover: crate::FAILOVER,
            ..Capabilities::ALL
        }
    }

    /// Two: the database thread commits requests that arrive while it works
    /// in one transaction, so a second reservation sent while the first is
    /// answered shares its commit (one fsync) instead of waiting for its own.
    fn reserves_in_flight(&self) -> usize {
        2
    }

    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        for task in &tasks {
            task.validate()?;
        }
        self.value_limit.check_batch(&tasks)?;
        let weight = tasks.len();
        self.call(true, weight, move |s| s.enqueue_many(tasks))
            .await
    }

    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        let (max, lease) = (params.max, params.lease);
        if max == 0 || params.queues.is_empty() {
            return Ok(Vec::new());
        }
        let queues = params.queues.to_vec();
        let worker = params.worker.map(str::to_string);
        let handlers = params.handlers.map(<[String]>::to_vec);
        self.call(true, max, move |s| {
            s.settling(|s| s.reserve(&queues, max, lease, worker.as_deref(), handlers.as_deref()))
        })
        .await
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let leases = leases.to_vec();
        self.call(true, leases.len(), move |s| s.renew(&leases, lease))
            .await
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let sizes = self.value_limit.check_finishes(&reports);
        if sizes.iter().all(Result::is_ok) {
            return self
                .call(true, reports.len(), move |s| {
                    s.settling(|s| s.finish(reports))
                })
                .await;
        }
        // Those that fit go to the store; the others get their refusal.
        let (fit, places): (Vec<Finish>, Vec<usize>) = reports
            .into_iter()
            .zip(&sizes)
            .enumerate()
            .filter(|(_, (_, size))| size.is_ok())
            .map(|(i, (r, _))| (r, i))
            .unzip();
        let mut out = sizes;
        if !fit.is_empty() {
            let answers = self
                .call(true, fit.len(), move |s| s.settling(|s| s.finish(fit)))
                .await?;
            for (i, answer) in places.into_iter().zip(answers) {
                out[i] = answer;
            }
        }
        Ok(out)
    }

    /// Waits for this process to make work available (an enqueue, a release, a
    /// requeue, a recovered lease) or for `timeout`; returns `true` either way,
    /// since the wait did its job of pacing the caller's polling. Needs a tokio
    /// runtime with its time driver enabled.
    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        let _ = queues;
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
        true
    }

    conveyor_core::own_parts!(all);
    conveyor_core::own_parts!(workflows, schedules);
}

#[async_trait]
impl Workflows for EmbeddedBackend {
    async fn submit(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        let weight = spec.nodes.len() + spec.callbacks.len();
        self.call(true, weight.max(1), move |s| s.submit_workflow(spec))
            .await
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error> {
        self.call(false, 1, move |s| s.workflow(id)).await
    }

    async fn cancel_workflow(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        self.call(true, 1, move |s| s.settling(|s| s.cancel_workflow(id)))
            .await
    }

    async fn retry_workflow(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        self.call(true, 1, move |s| s.retry_workflow(id)).await
    }

    async fn list_workflows(&self, filter: &WorkflowFilter) -> Result<Vec<WorkflowSummary>, Error> {
        let filter = filter.clone();
        self.call(false, 1, move |s| s.list_workflows(&filter))
            .await
    }
}

#[async_trait]
impl Schedules for EmbeddedBackend {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<ScheduleRecord, Error> {
        let schedule = schedule.clone();
        self.call(true, 1, move |s| s.put_schedule(&schedule)).await
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool, Error> {
        let name = name.to_string();
        self.call(true, 1, move |s| s.remove_schedule(&name)).await
    }

    async fn pause_schedule(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<ScheduleRecord>, Error> {
        let name = name.to_string();
        self.call(true, 1, move |s| s.pause_schedule(&name, paused))
            .await
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, Error> {
        let name = name.to_string();
        self.call(false, 1, move |s| s.schedule(&name)).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
        self.call(false, 1, move |s| s.schedules()).await
    }

    async fn next_fire(&self) -> Result<Option<Timestamp>, Error> {
        self.call(false, 1, move |s| s.next_fire()).await
    }

    async fn fire_due(&self, now: Timestamp) -> Result<Vec<Fired>, Error> {
        self.call(true, 1, move |s| s.fire_due(now)).await
    }

    async fn trigger_schedule(&self, name: &str) -> Result<Option<TaskId>, Error> {
        let name = name.to_string();
        self.call(true, 1, move |s| s.trigger_schedule(&name)).await
    }
}

#[async_trait]
impl ResultStore for EmbeddedBackend {
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        self.call(false, 1, move |s| s.get(id)).await
    }

    async fn finish_mark(&self) -> Option<FinishMark> {
        Some(self.finished.mark())
    }

    /// Woken at once by a task finished through any handle of this process
    /// on the file; returns after at most
    /// [`results_poll`](EmbeddedBackend::results_poll) otherwise, for the
    /// caller to see what other processes finished. Needs a tokio runtime
    /// with its time driver enabled.
    async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) -> bool {
        let timeout = timeout.min(self.results_poll);
        let _ = tokio::time::timeout(timeout, self.finished.wait(id, since)).await;
        true
    }
}

#[async_trait]
impl Inspection for EmbeddedBackend {
    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        self.call(false, 1, |s| s.stats()).await
    }

    async fn list(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        let params = params.clone();
        self.call(false, params.limit, move |s| s.list(&params))
            .await
    }

    async fn page(&self, params: &ListParams, search: Option<&Search>) -> Result<Page, Error> {
        let (params, search) = (params.clone(), search.cloned());
        self.call(false, params.limit, move |s| {
            s.page(&params, search.as_ref())
        })
        .await
    }

    async fn count(&self, params: &ListParams, search: Option<&Search>) -> Result<Count, Error> {
        let (params, search) = (params.clone(), search.cloned());
        self.call(false, 1, move |s| s.count(&params, search.as_ref()))
            .await
    }
}

#[async_trait]
impl Administration for EmbeddedBackend {
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        self.call(true, 1, move |s| s.settling(|s| s.cancel(id)))
            .await
    }

    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        let ids = ids.to_vec();
        self.call(true, ids.len(), move |s| s.requeue_dead(&ids))
            .await
    }

    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        let queue = queue.map(str::to_string);
        self.call(true, 1, move |s| s.purge_dead(queue.as_deref()))
            .await
    }
}

#[async_trait]
impl Maintenance for EmbeddedBackend {
    async fn recover_expired(&self) -> Result<u64, Error> {
        self.call(true, 1, |s| s.settling(|s| s.recover_expired()))
            .await
    }

    async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        self.call(true, 1, move |s| s.prune(retention)).await
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let (role, holder) = (role.to_string(), holder.to_string());
        self.call(true, 1, move |s| s.lead(&role, &holder, ttl))
            .await
    }
}

#[async_trait]
impl GlobalLimits for EmbeddedBackend {
    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        limits.validate()?;
        let handler = handler.to_string();
        self.call(true, 1, move |s| s.set_limits(&handler, limits))
            .await
    }

    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        self.call(false, 1, |s| s.limits()).await
    }
}
