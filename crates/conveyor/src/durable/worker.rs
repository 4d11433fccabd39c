//! The durable worker: runs a backend's tasks through the engine.
//!
//! A worker is the engine (a [`Pool`] with `slots` workers and one long-lived
//! job) plus four loops around a backend: the fetcher reserves only as many tasks
//! as there are free slots; the engine's result thread turns each outcome into a
//! report (and calls `on_task_complete`); the completer stores reports in
//! batches; the lease keeper renews leases of running tasks; the maintenance loop
//! recovers expired leases and prunes old tasks. On stop (SIGINT/SIGTERM with
//! [`Worker::run`]) it stops reserving, lets running tasks finish within the
//! grace period, then cancels the rest: tasks that never started are handed
//! back without counting the attempt, started ones are retried at once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use conveyor_core::{Backend, Codec, Error, Finish, HandlerLimits, Json, Retention};

use crate::handler::Handler;
use crate::pool::{PoolBuilder, DEFAULT_WORKERS};
use crate::results::TaskResult;

use super::fetcher::{self, FetchConfig};
use super::maintenance::{self, Schedule};
use super::registry::Registry;
use super::report::{decide, DurableResult, ReportKind};
use super::shared::{Counters, WorkerShared};
use super::{completer, lease_keeper};

/// Called with every finished durable task, on the engine's result thread.
pub type OnDurableComplete = Box<dyn FnMut(DurableResult) + Send>;

/// Default lease: how long a reserved task stays claimed without a renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default longest wait between two reservations while the queues are empty.
pub const DEFAULT_POLL: Duration = Duration::from_millis(200);
/// Default grace period of a graceful stop.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Configures a [`Worker`].
pub struct WorkerBuilder<C: Codec = Json> {
    backend: Arc<dyn Backend>,
    codec: C,
    registry: Registry,
    queues: Vec<String>,
    pool: PoolBuilder,
    slots: usize,
    lease: Duration,
    fetch_batch: usize,
    poll: Duration,
    grace: Duration,
    schedule: Schedule,
    on_task: Option<OnDurableComplete>,
    global_limits: Vec<(String, HandlerLimits)>,
}

impl<C: Codec> std::fmt::Debug for WorkerBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("backend", &self.backend.kind())
            .field("handlers", &self.registry.names())
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
        self.registry.add(handler, self.codec.clone());
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

    /// Tasks run at once (the engine's worker count; default 50).
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

    /// How long finished tasks are kept (default: 1 day, dead ones 7 days).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.schedule.retention = retention;
        self
    }

    /// How often expired leases are recovered (default 1 s) and old tasks pruned
    /// (default 60 s).
    pub fn maintenance(mut self, recover_every: Duration, prune_every: Duration) -> Self {
        self.schedule.recover_every = recover_every;
        self.schedule.prune_every = prune_every;
        self
    }

    /// Declares global limits for the handler named `handler`: at most
    /// `limits.concurrency` of its tasks run at once and they start at most at
    /// `limits.rate`, counted across every worker sharing the backend (not
    /// per process). The worker stores them with
    /// [`Backend::set_limits`] when it starts; the last worker to start wins,
    /// so give every worker the same limits. Needs a backend with
    /// [`Capabilities::handler_limits`](conveyor_core::Capabilities::handler_limits):
    /// [`build`](Self::build) refuses others with [`Error::Unsupported`] (use
    /// the handler's own `.concurrency(n)` / `.rate(..)` for per-process limits).
    pub fn global_limits(mut self, handler: impl Into<String>, limits: HandlerLimits) -> Self {
        let handler = handler.into();
        self.global_limits.retain(|(h, _)| *h != handler);
        self.global_limits.push((handler, limits));
        self
    }

    /// Called with every finished task, on the engine's result thread (a slow
    /// callback never blocks the workers).
    pub fn on_task_complete(mut self, f: impl FnMut(DurableResult) + Send + 'static) -> Self {
        self.on_task = Some(Box::new(f));
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<Worker<C>, Error> {
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_string()));
        if self.registry.is_empty() {
            return bad("a worker needs at least one handler");
        }
        if self.queues.is_empty() || self.queues.iter().any(String::is_empty) {
            return bad("a worker needs at least one non-empty queue name");
        }
        if self.slots == 0 || self.fetch_batch == 0 {
            return bad("slots and fetch batch must be at least 1");
        }
        if self.lease < Duration::from_millis(100) {
            return bad("the lease must be at least 100 ms");
        }
        if self.poll.is_zero() || self.schedule.recover_every.is_zero() {
            return bad("poll and maintenance intervals must be positive");
        }
        if !self.global_limits.is_empty() && !self.backend.capabilities().handler_limits {
            return Err(conveyor_core::unsupported(
                self.backend.kind(),
                "global handler limits",
            ));
        }
        for (_, limits) in &self.global_limits {
            limits.validate()?;
        }
        let shared = Arc::new(WorkerShared {
            backend: self.backend.clone(),
            queues: self.queues.clone(),
            slots: self.slots,
            lease: self.lease,
            inflight: Mutex::default(),
            busy: AtomicUsize::new(0),
            freed: Notify::new(),
            stop: CancellationToken::new(),
            aborting: AtomicBool::new(false),
            counters: Counters::default(),
        });
        Ok(Worker {
            shared,
            builder: self,
        })
    }
}

/// Counts of a worker's life so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks reserved.
    pub reserved: u64,
    /// Tasks completed.
    pub completed: u64,
    /// Attempts that failed and were reported for retry.
    pub retried: u64,
    /// Tasks dead-lettered by this worker.
    pub dead: u64,
    /// Tasks the handler discarded.
    pub discarded: u64,
    /// Tasks handed back unstarted.
    pub released: u64,
    /// Reports the backend refused because the lease had moved on.
    pub stale: u64,
    /// Leases found lost while renewing.
    pub lost_leases: u64,
    /// Backend calls that failed (and were retried).
    pub backend_errors: u64,
    /// Reserved tasks not reported yet (running, or waiting in the engine).
    pub in_flight: usize,
}

/// What a stopped worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    /// Counts over the worker's life.
    pub stats: WorkerStats,
    /// True when every running task finished within the grace period.
    pub drained: bool,
}

/// Stops a running worker gracefully from anywhere.
#[derive(Debug, Clone)]
pub struct WorkerStopper(CancellationToken);

impl WorkerStopper {
    /// Begins a graceful stop.
    pub fn stop(&self) {
        self.0.cancel();
    }
}

/// A configured worker; [`Worker::run`] it.
pub struct Worker<C: Codec = Json> {
    shared: Arc<WorkerShared>,
    builder: WorkerBuilder<C>,
}

impl<C: Codec> std::fmt::Debug for Worker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.builder.fmt(f)
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
            registry: Registry::default(),
            queues: vec![conveyor_core::DEFAULT_QUEUE.to_string()],
            pool: PoolBuilder::default(),
            slots: DEFAULT_WORKERS,
            lease: DEFAULT_LEASE,
            fetch_batch: 256,
            poll: DEFAULT_POLL,
            grace: DEFAULT_GRACE,
            schedule: Schedule {
                recover_every: Duration::from_secs(1),
                prune_every: Duration::from_secs(60),
                retention: Retention::default(),
            },
            on_task: None,
            global_limits: Vec::new(),
        }
    }

    /// A handle that stops the worker gracefully.
    pub fn stopper(&self) -> WorkerStopper {
        WorkerStopper(self.shared.stop.clone())
    }

    /// Counts so far.
    pub fn stats(&self) -> WorkerStats {
        stats(&self.shared)
    }

    /// Runs until SIGINT or SIGTERM (or [`WorkerStopper::stop`]), then stops gracefully.
    pub async fn run(self) -> Result<WorkerReport, Error> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `stop` completes (or [`WorkerStopper::stop`]), then stops gracefully.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<WorkerReport, Error> {
        let Worker { shared, builder } = self;
        for (handler, limits) in &builder.global_limits {
            shared.backend.set_limits(handler, *limits).await?;
        }
        let slots = builder.slots;
        let pool = builder.pool.workers(slots).build()?;
        let (tx, rx) = flume::bounded::<Finish>(slots);
        let on_result = result_callback(shared.clone(), tx.clone(), builder.on_task);
        let mut job = pool
            .job()
            .queue_capacity(slots)
            .result_capacity(slots.max(64))
            .on_task_complete(on_result)
            .start()?;
        let producer = job.producer().ok_or(Error::Closed)?;
        job.close();

        let give_up = CancellationToken::new();
        let done = CancellationToken::new();
        let completer = tokio::spawn(completer::run(shared.clone(), rx, give_up.clone()));
        let keeper = tokio::spawn(lease_keeper::run(shared.clone(), done.clone()));
        let upkeep = tokio::spawn(maintenance::run(
            shared.clone(),
            builder.schedule,
            done.clone(),
        ));
        let fetch = tokio::spawn(fetcher::run(
            shared.clone(),
            Arc::new(builder.registry),
            producer,
            tx,
            FetchConfig {
                batch: builder.fetch_batch,
                poll: builder.poll,
            },
        ));
        tracing::info!(backend = shared.backend.kind(), queues = ?shared.queues, slots, "worker started");

        tokio::select! {
            _ = stop => {}
            _ = shared.stop.cancelled() => {}
        }
        shared.stop.cancel();
        let _ = fetch.await;
        tracing::info!(
            in_flight = shared.busy.load(Ordering::Acquire),
            "worker stopping: draining"
        );
        let drained = shared.drained(Instant::now() + builder.grace).await;
        if !drained {
            tracing::warn!("grace period over: cancelling running tasks");
            shared.aborting.store(true, Ordering::Release);
            job.cancel();
            shared.drained(Instant::now() + builder.lease).await;
        }
        let _ = tokio::time::timeout(builder.lease, job.wait()).await;
        give_up.cancel();
        let _ = completer.await;
        done.cancel();
        let _ = keeper.await;
        let _ = upkeep.await;
        pool.shutdown(Duration::from_secs(1)).await;
        let report = WorkerReport {
            stats: stats(&shared),
            drained,
        };
        tracing::info!(?report, "worker stopped");
        Ok(report)
    }
}

fn stats(shared: &WorkerShared) -> WorkerStats {
    let c = &shared.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    WorkerStats {
        reserved: get(&c.reserved),
        completed: get(&c.completed),
        retried: get(&c.retried),
        dead: get(&c.dead),
        discarded: get(&c.discarded),
        released: get(&c.released),
        stale: get(&c.stale),
        lost_leases: get(&c.lost_leases),
        backend_errors: get(&c.backend_errors),
        in_flight: shared.busy.load(Ordering::Acquire),
    }
}

/// The engine's `on_task_complete`: decide the report, queue it, then call the
/// user's callback.
fn result_callback(
    shared: Arc<WorkerShared>,
    reports: flume::Sender<Finish>,
    mut user: Option<OnDurableComplete>,
) -> impl FnMut(TaskResult) + Send + 'static {
    move |result: TaskResult| {
        let Some(f) = shared.inflight.lock().remove(&result.id) else {
            return;
        };
        let aborting = shared.aborting.load(Ordering::Acquire);
        let (kind, action) = decide(&f.handler, &result, f.attempt, aborting);
        let c = &shared.counters;
        Counters::add(
            match kind {
                ReportKind::Completed => &c.completed,
                ReportKind::Retried => &c.retried,
                ReportKind::DeadLettered => &c.dead,
                ReportKind::Discarded => &c.discarded,
                ReportKind::Released => &c.released,
            },
            1,
        );
        let error = match &action {
            conveyor_core::FinishAction::Retry { error, .. }
            | conveyor_core::FinishAction::DeadLetter { error } => Some(error.clone()),
            conveyor_core::FinishAction::Discard { reason } => Some(reason.clone()),
            _ => None,
        };
        let _ = reports.send(Finish {
            lease: f.lease,
            action,
        });
        shared.release_slots(1);
        if let Some(cb) = user.as_mut() {
            cb(DurableResult {
                id: f.lease.id,
                queue: f.queue,
                attempt: f.attempt,
                report: kind,
                error,
                result,
            });
        }
    }
}

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
