//! The durable worker: runs a backend's tasks through the one runner.
//!
//! A worker is the [`Runner`] around the backend as a source (reserve is
//! fetch, finish is settle, the lease token is the receipt), plus the
//! backend's own duties: the global limits it stores at start and the
//! maintenance loop that recovers expired leases and prunes old tasks. On
//! stop (SIGINT/SIGTERM with [`Worker::run`]) it reserves nothing more, lets
//! running tasks finish within the grace period, then cancels the rest: tasks
//! that never started are handed back without counting the attempt, started
//! ones are retried at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use conveyor_core::{Backend, Codec, Error, HandlerLimits, Json, Retention};

use crate::events::EventBus;
use crate::handler::Handler;
use crate::pool::{PoolBuilder, DEFAULT_WORKERS};
use crate::source::{
    Routes, Runner, RunnerHandle, RunnerReport, RunnerStats, Settled, DEFAULT_CALLBACK_CAPACITY,
};

use super::backend_source::BackendSource;
use super::maintenance::{self, Upkeep};

/// Called with every finished durable task, on the worker's callback thread.
pub type OnDurableComplete = crate::source::OnSettled;

/// A finished durable task, as given to the worker's `on_task_complete`.
pub type DurableResult = Settled;

/// Counts of a worker's life so far.
pub type WorkerStats = RunnerStats;

/// What a stopped worker did.
pub type WorkerReport = RunnerReport;

/// Default lease: how long a reserved task stays claimed without a renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default longest wait between two reservations while the queues are empty.
pub const DEFAULT_POLL: Duration = crate::source::DEFAULT_POLL;
/// Default grace period of a graceful stop.
pub const DEFAULT_GRACE: Duration = crate::source::DEFAULT_GRACE;

/// Configures a [`Worker`].
pub struct WorkerBuilder<C: Codec = Json> {
    backend: Arc<dyn Backend>,
    codec: C,
    routes: Routes<Vec<u8>>,
    queues: Vec<String>,
    pool: PoolBuilder,
    slots: usize,
    lease: Duration,
    fetch_batch: usize,
    poll: Duration,
    grace: Duration,
    upkeep: Upkeep,
    on_task: Option<OnDurableComplete>,
    callback_capacity: usize,
    global_limits: Vec<(String, HandlerLimits)>,
    handler_retention: HashMap<String, Retention>,
    events: EventBus,
    schedules: Vec<conveyor_core::schedule::Schedule>,
}

impl<C: Codec> std::fmt::Debug for WorkerBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("backend", &self.backend.kind())
            .field("handlers", &self.routes.names())
            .field("queues", &self.queues)
            .field("slots", &self.slots)
            .finish()
    }
}

impl<C: Codec> WorkerBuilder<C> {
    /// Registers a handler under its name. Its params are decoded from the task's
    /// payload and its output encoded as the task's result. Its retry policy
    /// gives the backoff between attempts and whether timeouts and panics are
    /// retried. A task gets the attempts it was enqueued with
    /// ([`EnqueueOptions::max_attempts`](super::EnqueueOptions::max_attempts),
    /// default 3), capped by the handler's `max_attempts` when the handler sets a
    /// retry policy.
    pub fn handler<In, Out>(mut self, handler: Handler<In, Out>) -> Self
    where
        In: DeserializeOwned + Clone + Send + 'static,
        Out: Serialize + Send + 'static,
    {
        let (dec, enc) = (self.codec.clone(), self.codec.clone());
        self.routes.add(
            handler,
            move |payload: &Vec<u8>| dec.decode(payload).map_err(|e| e.to_string()),
            move |out: &Out| enc.encode(out).map(Some),
        );
        self
    }

    /// Takes tasks from these queues, in this order of preference (default: `default`).
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Tasks run at once, in every lane (the engine's worker count, and the
    /// process lane's limit unless [`WorkerBuilder::pool`] sets one;
    /// default 50).
    pub fn slots(mut self, n: usize) -> Self {
        self.slots = n;
        self
    }

    /// The engine's pool settings (lane limits, cpu threads, rate). Its worker
    /// count is replaced by [`WorkerBuilder::slots`].
    pub fn pool(mut self, pool: PoolBuilder) -> Self {
        self.pool = pool;
        self
    }

    /// How long a reservation lasts without renewal (default 30 s). A worker that
    /// dies holds its tasks this long before they run elsewhere.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Most tasks per reservation call (default 256).
    pub fn fetch_batch(mut self, n: usize) -> Self {
        self.fetch_batch = n;
        self
    }

    /// Longest wait between two reservations while the queues are empty (default 200 ms).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// How long a graceful stop waits for running tasks (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long finished tasks are kept (default: 1 day, dead ones 7 days),
    /// unless their handler's retention ([`handler_retention`](Self::handler_retention))
    /// or their own keep ([`NewTask::keep`](conveyor_core::NewTask::keep))
    /// says otherwise. It is applied by whichever worker leads the pruning
    /// role, so give every worker sharing a store the same.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.upkeep.retention = retention;
        self
    }

    /// How long the finished tasks of handler `handler` are kept, stamped
    /// on each when this worker reports it finished, so it holds whichever
    /// worker prunes. A task's own keep wins. Needs a backend with
    /// [`Capabilities::keep`](conveyor_core::Capabilities::keep):
    /// [`build`](Self::build) refuses others with [`Error::Unsupported`].
    pub fn handler_retention(mut self, handler: impl Into<String>, retention: Retention) -> Self {
        self.handler_retention.insert(handler.into(), retention);
        self
    }

    /// How often expired leases are recovered (default 1 s) and old tasks pruned
    /// (default 60 s).
    pub fn maintenance(mut self, recover_every: Duration, prune_every: Duration) -> Self {
        self.upkeep.recover_every = recover_every;
        self.upkeep.prune_every = prune_every;
        self
    }

    /// Declares global limits for the handler named `handler`: at most
    /// `limits.concurrency` of its tasks run at once and they start at most at
    /// `limits.rate`, counted across every worker sharing the backend (not
    /// per process). The worker stores them with
    /// [`GlobalLimits::set_limits`](conveyor_core::GlobalLimits::set_limits) when it starts; the last worker to start wins,
    /// so give every worker the same limits. Needs a backend with
    /// [`GlobalLimits`](conveyor_core::GlobalLimits) part:
    /// [`build`](Self::build) refuses others with [`Error::Unsupported`] (use
    /// the handler's own `.concurrency(n)` / `.rate(..)` for per-process limits).
    pub fn global_limits(mut self, handler: impl Into<String>, limits: HandlerLimits) -> Self {
        let handler = handler.into();
        self.global_limits.retain(|(h, _)| *h != handler);
        self.global_limits.push((handler, limits));
        self
    }

    /// Declares a periodic schedule
    /// ([`conveyor_core::schedule::Schedule`]): stored in the backend when
    /// the worker starts (keeping where it stood unless its timing
    /// changed), and fired, with every other schedule of the backend, by
    /// whichever worker leads the `schedules` role (see `scheduler`).
    /// Needs a backend with the schedules and maintenance parts:
    /// [`build`](Self::build) refuses others with [`Error::Unsupported`].
    pub fn schedule(mut self, schedule: conveyor_core::schedule::Schedule) -> Self {
        self.schedules.retain(|s| s.name != schedule.name);
        self.schedules.push(schedule);
        self
    }

    /// Called with every finished task (after its report is queued for the
    /// backend) on a thread of its own: a slow or even blocked callback never
    /// delays a report, a slot or another task. It may fall at most
    /// [`callback_capacity`](Self::callback_capacity) results behind; results
    /// beyond that skip it, counted in
    /// [`WorkerStats::callbacks_dropped`](crate::source::RunnerStats::callbacks_dropped)
    /// (the backend has them all).
    pub fn on_task_complete(mut self, f: impl FnMut(DurableResult) + Send + 'static) -> Self {
        self.on_task = Some(Box::new(f));
        self
    }

    /// How many finished tasks may wait for a slow `on_task_complete`
    /// (default 10,000).
    pub fn callback_capacity(mut self, n: usize) -> Self {
        self.callback_capacity = n.max(1);
        self
    }

    /// Emits the worker's lifecycle events (tasks started, succeeded,
    /// retried, dead-lettered…; worker started, heartbeat, stopping) on
    /// `bus` instead of a bus of its own (see [`Worker::events`]).
    pub fn events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// Checks the configuration: what the runner it builds checks
    /// ([`Runner::validate`]: handlers, slots, fetch batch, poll interval),
    /// then what only a worker has (queues, lease, maintenance, global
    /// limits).
    pub fn build(self) -> Result<Worker<C>, Error> {
        // One id for the worker's life: its heartbeats and every attempt it
        // reserves name it.
        let id = maintenance::holder();
        let handlers = self.routes.names();
        let source = BackendSource::new(
            self.backend.clone(),
            self.queues.clone(),
            self.lease,
            id.clone(),
            handlers.clone(),
            self.handler_retention.clone(),
        );
        let mut runner = Runner::new(source, self.routes)
            .slots(self.slots)
            .pool(self.pool)
            .fetch_batch(self.fetch_batch)
            .poll_interval(self.poll)
            .grace(self.grace)
            .with_events(self.events);
        if let Some(f) = self.on_task {
            runner = runner.on_task_complete(self.callback_capacity, f);
        }
        runner.validate()?;
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_string()));
        if self.queues.is_empty() || self.queues.iter().any(String::is_empty) {
            return bad("a worker needs at least one non-empty queue name");
        }
        if self.lease < Duration::from_millis(100) {
            return bad("the lease must be at least 100 ms");
        }
        if self.upkeep.recover_every.is_zero() {
            return bad("poll and maintenance intervals must be positive");
        }
        if !self.global_limits.is_empty() && self.backend.global_limits().is_err() {
            return Err(conveyor_core::unsupported(
                self.backend.kind(),
                "global handler limits",
            ));
        }
        for (_, limits) in &self.global_limits {
            limits.validate()?;
        }
        if !self.schedules.is_empty() {
            self.backend.schedules()?;
            self.backend.maintenance()?;
        }
        if !self.handler_retention.is_empty() && !self.backend.capabilities().keep {
            return Err(conveyor_core::unsupported(
                self.backend.kind(),
                "a handler's own retention (finished tasks go by the retention the workers \
                 prune with)",
            ));
        }
        if let Some(h) = self
            .handler_retention
            .keys()
            .find(|h| !handlers.contains(h))
        {
            return bad(&format!(
                "a retention is given for handler {h:?}, which this worker does not run"
            ));
        }
        self.backend.set_slots(self.slots);
        Ok(Worker {
            handle: runner.handle(),
            runner,
            backend: self.backend,
            queues: self.queues,
            upkeep: self.upkeep,
            global_limits: self.global_limits,
            schedules: self.schedules,
            maintenance_errors: Arc::new(AtomicU64::new(0)),
            slots: self.slots,
            handlers,
            id,
            _codec: std::marker::PhantomData,
        })
    }
}

/// Stops a running worker gracefully from anywhere.
#[derive(Debug, Clone)]
pub struct WorkerStopper(RunnerHandle);

impl WorkerStopper {
    /// Begins a graceful stop.
    pub fn stop(&self) {
        self.0.stop();
    }
}

/// Reads a running worker's counts from anywhere (for metrics, a health
/// check), without holding the worker.
#[derive(Clone)]
pub struct WorkerProbe {
    handle: RunnerHandle,
    maintenance_errors: Arc<AtomicU64>,
    slots: usize,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for WorkerProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerProbe")
            .field("slots", &self.slots)
            .field("backend", &self.backend.kind())
            .finish_non_exhaustive()
    }
}

impl WorkerProbe {
    /// Counts so far (as [`Worker::stats`]).
    pub fn stats(&self) -> WorkerStats {
        let mut stats = self.handle.stats();
        stats.backend_errors += self.maintenance_errors.load(Ordering::Relaxed);
        stats
    }

    /// Tasks the worker runs at once at most.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Times the worker's backend lost a connection and connected again
    /// ([`Backend::reconnects`]); `None` for a backend with no connection.
    pub fn reconnects(&self) -> Option<u64> {
        self.backend.reconnects()
    }
}

/// A configured worker; [`Worker::run`] it.
pub struct Worker<C: Codec = Json> {
    runner: Runner<BackendSource>,
    handle: RunnerHandle,
    backend: Arc<dyn Backend>,
    queues: Vec<String>,
    upkeep: Upkeep,
    global_limits: Vec<(String, HandlerLimits)>,
    schedules: Vec<conveyor_core::schedule::Schedule>,
    maintenance_errors: Arc<AtomicU64>,
    slots: usize,
    /// The handlers it runs, for its heartbeats.
    handlers: Vec<String>,
    /// Its id: in its heartbeats, and as the worker of every attempt it reserves.
    id: String,
    _codec: std::marker::PhantomData<C>,
}

impl<C: Codec> std::fmt::Debug for Worker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("backend", &self.backend.kind())
            .field("queues", &self.queues)
            .field("runner", &self.runner)
            .finish()
    }
}

impl Worker<Json> {
    /// A worker on `backend` with JSON payloads.
    pub fn builder(backend: Arc<dyn Backend>) -> WorkerBuilder<Json> {
        Self::builder_with_codec(backend, Json)
    }
}

impl<C: Codec> Worker<C> {
    /// A worker on `backend` with another codec (clients must use the same one).
    pub fn builder_with_codec(backend: Arc<dyn Backend>, codec: C) -> WorkerBuilder<C> {
        WorkerBuilder {
            backend,
            codec,
            routes: Routes::new(),
            queues: vec![conveyor_core::DEFAULT_QUEUE.to_string()],
            pool: PoolBuilder::default(),
            slots: DEFAULT_WORKERS,
            lease: DEFAULT_LEASE,
            fetch_batch: 256,
            poll: DEFAULT_POLL,
            grace: DEFAULT_GRACE,
            upkeep: Upkeep {
                recover_every: Duration::from_secs(1),
                prune_every: Duration::from_secs(60),
                retention: Retention::default(),
            },
            on_task: None,
            callback_capacity: DEFAULT_CALLBACK_CAPACITY,
            global_limits: Vec::new(),
            handler_retention: HashMap::new(),
            events: EventBus::new(),
            schedules: Vec::new(),
        }
    }

    /// Its id (`host:pid:random`): the id of its heartbeats in the
    /// backend's worker registry, and the worker named in the history of
    /// every attempt it runs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A handle that stops the worker gracefully.
    pub fn stopper(&self) -> WorkerStopper {
        WorkerStopper(self.handle.clone())
    }

    /// The worker's event bus: subscribe before [`Worker::run`] to hear
    /// every event.
    pub fn events(&self) -> EventBus {
        self.runner.events()
    }

    /// Counts so far.
    pub fn stats(&self) -> WorkerStats {
        self.probe().stats()
    }

    /// A handle that reads the worker's counts while it runs.
    pub fn probe(&self) -> WorkerProbe {
        WorkerProbe {
            handle: self.handle.clone(),
            maintenance_errors: self.maintenance_errors.clone(),
            slots: self.slots,
            backend: self.backend.clone(),
        }
    }

    /// Runs until SIGINT or SIGTERM (or [`WorkerStopper::stop`]), then stops gracefully.
    pub async fn run(self) -> Result<WorkerReport, Error> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `stop` completes (or [`WorkerStopper::stop`]), then stops gracefully.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<WorkerReport, Error> {
        let Worker {
            runner,
            backend,
            queues,
            upkeep,
            global_limits,
            schedules,
            maintenance_errors,
            handle,
            slots,
            handlers,
            id,
            ..
        } = self;
        for (handler, limits) in &global_limits {
            backend.set_limits(handler, *limits).await?;
        }
        for schedule in &schedules {
            backend.schedules()?.put_schedule(schedule).await?;
        }
        let done = tokio_util::sync::CancellationToken::new();
        // Maintenance ends as the stop begins: a call to the store it has
        // out gets [`DUTY_STOP`] from then, overlapping the grace, never
        // adding to the time the stop takes. Heartbeats go on while the
        // worker drains, then write the entry marked stopped.
        let upkeep_done = done.child_token();
        let upkeep = tokio::spawn(maintenance::run(
            backend.clone(),
            upkeep,
            maintenance_errors.clone(),
            upkeep_done.clone(),
        ));
        let firing = tokio::spawn(super::scheduler::run(
            backend.clone(),
            id.clone(),
            maintenance_errors.clone(),
            upkeep_done.clone(),
        ));
        let winding = {
            let (watched, upkeep_abort, firing_abort) =
                (handle.clone(), upkeep.abort_handle(), firing.abort_handle());
            tokio::spawn(async move {
                watched.stopping().await;
                upkeep_done.cancel();
                tokio::time::sleep(DUTY_STOP).await;
                upkeep_abort.abort();
                firing_abort.abort();
            })
        };
        let beats = tokio::spawn(super::heartbeat::run(
            backend.clone(),
            super::heartbeat::describe(id, &queues, &handlers, slots),
            handle,
            maintenance_errors.clone(),
            done.clone(),
        ));
        tracing::debug!(backend = backend.kind(), ?queues, "worker started");
        let run = runner.run_until(stop).await;
        done.cancel();
        winding.abort();
        // The last heartbeat gets [`DUTY_STOP`]; none when the store did not
        // take the last outcomes (it is not answering: the stop is past its
        // grace already).
        let unanswered = run.as_ref().is_ok_and(|r| r.stats.unstored > 0);
        let until = tokio::time::Instant::now()
            + if unanswered {
                Duration::ZERO
            } else {
                DUTY_STOP
            };
        for duty in [upkeep, firing, beats] {
            let abort = duty.abort_handle();
            if tokio::time::timeout_at(until, duty).await.is_err() {
                abort.abort();
            }
        }
        let mut report = run?;
        report.stats.backend_errors += maintenance_errors.load(Ordering::Relaxed);
        tracing::debug!(?report, "worker stopped");
        Ok(report)
    }
}

/// How long a stopping worker waits for its maintenance and heartbeat
/// duties' calls to the store.
const DUTY_STOP: Duration = Duration::from_millis(300);

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot listen for SIGINT/SIGTERM");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
