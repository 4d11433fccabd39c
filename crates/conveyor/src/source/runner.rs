//! The runner: one executor around any [`Source`].
//!
//! It runs a source's tasks on a pool's lanes and limits, with at most
//! `slots` of them fetched and unsettled at once. Four parts, each written
//! once for every source: the fetcher takes tasks up to the free slots; the
//! engine runs them under the source's own ids and hands each final result
//! straight to the runner's sink, which decides the next step and queues the
//! settlement; the settler gives settlements to the source in batches; the
//! lease keeper renews claims while tasks run, and the settle watch stops an
//! attempt soon after its task was settled elsewhere (cancelled by an
//! operator). On stop it fetches nothing
//! more, lets running tasks finish within the grace period, then cancels the
//! rest (unstarted ones are handed back without losing an attempt).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use conveyor_core::Error;

use crate::engine::job_state::JobState;
use crate::events::{Event, EventBus, WorkerEvent};
use crate::pool::{Pool, PoolBuilder};

use super::callbacks::{Callbacks, OnSettled, Settled, DEFAULT_CALLBACK_CAPACITY};
use super::contract::Source;
use super::control::{Control, ControlOps};
use super::fetcher::{self, FetchConfig};
use super::held::Held;
use super::routes::Routes;
use super::runner_state::RunnerState;
use super::sink::RunnerSink;
use super::slots::Slots;
use super::stats::{Counters, RunnerStats};
use super::ticker::Ticker;
use super::{lease_keeper, settle_watch, settler};

/// Default longest wait between two fetches while the source is empty.
pub const DEFAULT_POLL: Duration = Duration::from_millis(200);
/// Default grace period of a graceful stop.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Default most tasks per fetch.
pub const DEFAULT_FETCH_BATCH: usize = 256;

/// Where a runner's tasks run.
enum Engine {
    /// A pool of its own, built with the runner's slots as its workers.
    Own(PoolBuilder),
    /// A pool shared with other work.
    Shared(Pool),
}

/// Runs a [`Source`]'s tasks: build it with [`Runner::new`], then
/// [`Runner::run_until`].
pub struct Runner<S: Source> {
    source: Arc<S>,
    routes: Routes<S::Payload>,
    engine: Engine,
    slots: usize,
    batch: usize,
    poll: Duration,
    grace: Duration,
    on_task: Option<OnSettled>,
    callback_capacity: usize,
    stop: CancellationToken,
    observer: Arc<Mutex<Option<StatsReader>>>,
    events: EventBus,
    heartbeat: Duration,
}

/// Reads a running runner's counts.
type StatsReader = Arc<dyn Fn() -> RunnerStats + Send + Sync>;

impl<S: Source> std::fmt::Debug for Runner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("handlers", &self.routes.names())
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// What a stopped runner did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerReport {
    /// Counts over the runner's life.
    pub stats: RunnerStats,
    /// True when every running task finished within the grace period.
    pub drained: bool,
}

/// Stops a runner gracefully from anywhere and reads its counts.
#[derive(Clone)]
pub struct RunnerHandle {
    stop: CancellationToken,
    stats: Arc<Mutex<Option<StatsReader>>>,
}

impl std::fmt::Debug for RunnerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerHandle")
            .field("stopping", &self.stop.is_cancelled())
            .finish()
    }
}

impl RunnerHandle {
    /// Begins a graceful stop.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Completes once a stop has begun (by [`RunnerHandle::stop`] or the
    /// runner's own stop future).
    pub(crate) async fn stopping(&self) {
        self.stop.cancelled().await;
    }

    /// Counts so far.
    pub fn stats(&self) -> RunnerStats {
        let read = self.stats.lock().clone();
        read.map(|read| read()).unwrap_or_default()
    }
}

impl<S: Source> Runner<S> {
    /// A runner of `source`'s tasks with these handlers: 50 slots, its own
    /// pool, a fetch batch of 256, a poll interval of 200 ms, a grace period
    /// of 30 s.
    pub fn new(source: S, routes: Routes<S::Payload>) -> Self {
        Self {
            source: Arc::new(source),
            routes,
            engine: Engine::Own(PoolBuilder::default()),
            slots: crate::pool::DEFAULT_WORKERS,
            batch: DEFAULT_FETCH_BATCH,
            poll: DEFAULT_POLL,
            grace: DEFAULT_GRACE,
            on_task: None,
            callback_capacity: DEFAULT_CALLBACK_CAPACITY,
            stop: CancellationToken::new(),
            observer: Arc::new(Mutex::new(None)),
            events: EventBus::new(),
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }

    /// Emits the runner's lifecycle events on `bus` (default: a bus of its
    /// own, see [`Runner::events`]).
    pub fn with_events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// The runner's event bus: subscribe to it for task, worker and source
    /// events.
    pub fn events(&self) -> EventBus {
        self.events.clone()
    }

    /// How often a heartbeat event is emitted while someone listens
    /// (default 5 s).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Tasks fetched and unsettled at once (default 50): with a pool of its
    /// own, also the pool's worker count.
    pub fn slots(mut self, n: usize) -> Self {
        self.slots = n;
        self
    }

    /// The settings of the runner's own pool (lane limits, cpu threads,
    /// rate); its worker count is replaced by the slots.
    pub fn pool(mut self, pool: PoolBuilder) -> Self {
        self.engine = Engine::Own(pool);
        self
    }

    /// Runs the tasks on a pool shared with other work instead.
    pub fn shared_pool(mut self, pool: Pool) -> Self {
        self.engine = Engine::Shared(pool);
        self
    }

    /// Most tasks per fetch (default 256).
    pub fn fetch_batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// Longest wait between two fetches while the source is empty (default 200 ms).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// How long a graceful stop waits for running tasks (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Called with every settled task on a thread of its own, after the
    /// source has answered its settlement ([`Settled::stored`] says what it
    /// did): a slow or blocked callback never
    /// delays a settlement or a slot. It may fall at most `capacity`
    /// results behind (default 10,000); results beyond that skip it (counted
    /// in [`RunnerStats::callbacks_dropped`]).
    pub fn on_task_complete(
        mut self,
        capacity: usize,
        f: impl FnMut(Settled) + Send + 'static,
    ) -> Self {
        self.on_task = Some(Box::new(f));
        self.callback_capacity = capacity;
        self
    }

    /// The source.
    pub fn source(&self) -> &Arc<S> {
        &self.source
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_string()));
        if self.routes.is_empty() {
            return bad("a worker needs at least one handler");
        }
        if self.slots == 0 || self.batch == 0 {
            return bad("slots and fetch batch must be at least 1");
        }
        if self.poll.is_zero() {
            return bad("the poll interval must be positive");
        }
        Ok(())
    }

    /// A handle to stop the runner and read its counts (valid before, during
    /// and after the run).
    pub fn handle(&self) -> RunnerHandle {
        RunnerHandle {
            stop: self.stop.clone(),
            stats: self.observer.clone(),
        }
    }

    /// Runs until `stop` completes (or [`RunnerHandle::stop`]), then stops
    /// gracefully.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<RunnerReport, Error> {
        self.validate()?;
        let slots = self.slots;
        let (pool, own_pool) = match self.engine {
            // A child process is not CPU work: a worker with 3 slots runs 3
            // handler processes at once, whatever the core count.
            Engine::Own(builder) => (
                builder.workers(slots).process_limit_or(slots).build()?,
                true,
            ),
            Engine::Shared(pool) => (pool, false),
        };
        let callbacks = match self.on_task {
            Some(f) => Some(Callbacks::spawn(f, self.callback_capacity)?),
            None => None,
        };
        let (tx, rx) = flume::unbounded();
        let shared = Arc::new_cyclic(|me| {
            let sink = Arc::new(RunnerSink {
                shared: me.clone(),
                events: self.events.clone(),
                follow_ups: self.source.follow_ups(),
            });
            let job =
                JobState::with_sink(&pool.engine, SOURCE_JOB_CAPACITY, None, Some(sink), None);
            RunnerState {
                retries: self.source.retries(),
                source: self.source.clone(),
                held: Held::new(),
                slots: Slots::new(slots),
                counters: Counters::default(),
                settlements: tx,
                unstored: parking_lot::Mutex::new(Vec::new()),
                callbacks,
                cancels: job.cancels.clone(),
                job,
                stop: self.stop.clone(),
                aborting: std::sync::atomic::AtomicBool::new(false),
                events: self.events.clone(),
            }
        });
        shared.source.attach(Control {
            ops: Arc::downgrade(&shared) as std::sync::Weak<dyn ControlOps>,
        });
        {
            // Weak: a handle kept after the run must not keep the runner alive.
            let s = Arc::downgrade(&shared);
            *self.observer.lock() = Some(Arc::new(move || {
                s.upgrade().map(|s| s.stats()).unwrap_or_default()
            }));
        }
        let job = &shared.job;

        let closing = CancellationToken::new();
        let give_up = CancellationToken::new();
        let done = CancellationToken::new();
        let settle = tokio::spawn(settler::run(
            shared.clone(),
            rx,
            closing.clone(),
            give_up.clone(),
        ));
        let lease = shared.source.lease();
        let keeper =
            lease.map(|lease| tokio::spawn(lease_keeper::run(shared.clone(), lease, done.clone())));
        let watch = (lease.is_some() && shared.source.signals_settles())
            .then(|| tokio::spawn(settle_watch::run(shared.clone(), done.clone())));
        let fetch = tokio::spawn(fetcher::run(
            shared.clone(),
            Arc::new(self.routes),
            FetchConfig {
                batch: self.batch,
                poll: self.poll,
                grace: self.grace,
            },
        ));

        let events = self.events.clone();
        events.emit(|| {
            Event::Worker(WorkerEvent::Started {
                slots,
                at: SystemTime::now(),
            })
        });
        let beat = tokio::spawn(heartbeat(shared.clone(), self.heartbeat, done.clone()));

        tokio::select! {
            _ = stop => {}
            _ = shared.stop.cancelled() => {}
        }
        shared.stop.cancel();
        // The grace counts from the stop: fetches out and running tasks
        // share it, and what comes after it (settling, callbacks, the other
        // duties) shares [`WRAP_UP`], so a stop takes at most the grace and
        // that, even when the store does not answer.
        let stopped_at = Instant::now();
        let _ = fetch.await;
        let in_flight = shared.slots.busy();
        tracing::info!(in_flight, "stopping: draining");
        events.emit(|| {
            Event::Worker(WorkerEvent::Stopping {
                in_flight,
                at: SystemTime::now(),
            })
        });
        let drained = shared.slots.drained(stopped_at + self.grace).await;
        let wrap_up = Instant::now().max(stopped_at + self.grace) + WRAP_UP;
        if !drained {
            tracing::warn!("grace period over: cancelling running tasks");
            shared.aborting.store(true, Ordering::Release);
            job.cancel();
            // Cancelled attempts settle at once, but for CPU work, which
            // cannot be interrupted: its claims run out and it runs again.
            shared.slots.drained(wrap_up - WRAP_UP / 2).await;
        }
        closing.cancel();
        // The settler stores what is queued while the store answers, and
        // gives up at the wrap-up's end (a call in flight is abandoned: its
        // claims run out and those tasks run again).
        let give_up_at = tokio::spawn({
            let give_up = give_up.clone();
            async move {
                tokio::time::sleep_until(wrap_up).await;
                give_up.cancel();
            }
        });
        let _ = settle.await;
        give_up_at.abort();
        if let Some(callbacks) = &shared.callbacks {
            if !callbacks.idle(wrap_up).await {
                tracing::warn!("on_task_complete is still busy; not waiting for it");
            }
        }
        done.cancel();
        if let Some(keeper) = keeper {
            let _ = keeper.await;
        }
        if let Some(watch) = watch {
            let _ = watch.await;
        }
        let _ = beat.await;
        if own_pool {
            let left = wrap_up.saturating_duration_since(Instant::now());
            pool.shutdown(left.max(Duration::from_millis(100))).await;
        }
        let stats = shared.stats();
        *self.observer.lock() = Some(Arc::new(move || stats));
        events.emit(|| {
            Event::Worker(WorkerEvent::Stopped {
                stats,
                drained,
                at: SystemTime::now(),
            })
        });
        Ok(RunnerReport { stats, drained })
    }
}

/// How long a stop takes past its grace at most: storing the last
/// settlements, the callbacks' last results.
pub const WRAP_UP: Duration = Duration::from_millis(1000);

/// Default interval between two heartbeat events.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Emits a heartbeat with the counts every `every`, while someone listens,
/// until `done` fires.
async fn heartbeat<S: Source>(
    shared: Arc<RunnerState<S>>,
    every: Duration,
    done: CancellationToken,
) {
    let mut tick = Ticker::new(every);
    while tick.next(&done).await {
        shared.events.emit(|| {
            Event::Worker(WorkerEvent::Heartbeat {
                stats: shared.stats(),
                at: SystemTime::now(),
            })
        });
    }
}

/// A source job's queue capacity: unbounded in effect, since the runner
/// bounds its tasks by its slots (finished tasks give their capacity back in
/// bulk, a moment after their outcome, which must never refuse a fetch).
const SOURCE_JOB_CAPACITY: usize = tokio::sync::Semaphore::MAX_PERMITS / 2;
