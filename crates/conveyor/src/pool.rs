//! The pool: workers, lanes and pool-wide limits, shared by every job on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use conveyor_core::{Error, Lane};

use crate::engine::attempt::deliver_unstarted;
use crate::engine::cancel::Cancels;
use crate::engine::dispatcher::{DispatchLimits, Dispatcher};
use crate::engine::envelope::{Event, Ready};
use crate::engine::metrics::MetricsSnapshot;
use crate::engine::rate::RateLimiter;
use crate::engine::ready_queue::{ready_queue, ReadyReceiver, ReadySender};
use crate::engine::worker::{self, Board};
use crate::job::JobBuilder;
use crate::lane::cpu::CpuPool;
use conveyor_core::Rate;

/// The default number of workers: tasks running at once across all lanes.
pub const DEFAULT_WORKERS: usize = 50;

/// The dispatcher's inbox.
pub(crate) type EventSender = mpsc::UnboundedSender<Event>;

/// What every job and task of a pool shares.
pub(crate) struct PoolShared {
    pub(crate) events: EventSender,
    /// Workers' shared state and the pool's counters.
    pub(crate) board: Arc<Board>,
    /// Tasks that may start now, taken by the workers.
    pub(crate) ready: ReadySender<Ready>,
    /// Kept so shutdown can take back tasks no worker has picked up.
    ready_rx: ReadyReceiver<Ready>,
    /// Plain io tasks may skip the dispatcher: no pool rate, no io-lane limit
    /// below the worker count.
    pub(crate) fast_io: bool,
    pub(crate) cpu: CpuPool,
    /// Cancelled on immediate shutdown (and when the last `Pool` handle drops).
    pub(crate) token: CancellationToken,
    /// Set once shutdown begins: no new submissions.
    pub(crate) closing: AtomicBool,
    /// Set with `token`, so hot paths can check it without a lock.
    pub(crate) stopped: AtomicBool,
    /// Every open job's [`Cancels`], woken when the pool stops; with the
    /// length at which dead entries are pruned next.
    jobs: Mutex<(Vec<Weak<Cancels>>, usize)>,
}

impl PoolShared {
    /// Immediate stop: no new submissions; everything is cancelled.
    pub(crate) fn stop(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.stopped.store(true, Ordering::SeqCst);
        self.token.cancel();
        let jobs: Vec<_> = self
            .jobs
            .lock()
            .0
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for cancels in jobs {
            cancels.wake_handlers();
        }
        for signal in self.board.signals.iter() {
            signal.wake();
        }
    }

    /// Registers a new job's [`Cancels`], to be woken when the pool stops.
    pub(crate) fn register(&self, cancels: &Arc<Cancels>) {
        let mut jobs = self.jobs.lock();
        let (list, prune_at) = &mut *jobs;
        list.push(Arc::downgrade(cancels));
        if list.len() >= *prune_at {
            list.retain(|w| w.strong_count() > 0);
            *prune_at = (list.len() * 2).max(64);
        }
    }
}

/// Cancels the pool when the last user handle is dropped.
struct DropGuard {
    shared: Arc<PoolShared>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// A pool of workers running tasks from any number of jobs.
///
/// Cheap to clone; when the last clone is dropped every waiting task is
/// cancelled, running attempts are cancelled (child processes killed), and the
/// cpu threads exit once their current closure returns. Create it inside a tokio
/// runtime.
#[derive(Clone)]
pub struct Pool {
    pub(crate) shared: Arc<PoolShared>,
    config: Arc<PoolConfig>,
    _guard: Arc<DropGuard>,
}

/// A pool's configuration (see [`PoolBuilder`]).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Tasks running at once across all lanes.
    pub workers: usize,
    /// io-lane limit.
    pub io: usize,
    /// cpu-lane threads (and limit).
    pub cpu: usize,
    /// process-lane limit.
    pub process: usize,
    /// Pool-wide rate of starts.
    pub rate: Option<Rate>,
}

/// Configures a [`Pool`].
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    workers: usize,
    io: Option<usize>,
    cpu: Option<usize>,
    process: Option<usize>,
    rate: Option<Rate>,
    cpu_background: bool,
}

/// The number of cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            workers: DEFAULT_WORKERS,
            io: None,
            cpu: None,
            process: None,
            rate: None,
            cpu_background: true,
        }
    }
}

impl PoolBuilder {
    /// Tasks running at once across all lanes (default 50).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// io-lane limit (default: `workers`).
    pub fn io_limit(mut self, n: usize) -> Self {
        self.io = Some(n);
        self
    }

    /// cpu-lane threads (default: the number of cores).
    pub fn cpu_threads(mut self, n: usize) -> Self {
        self.cpu = Some(n);
        self
    }

    /// process-lane limit: child processes at once (default: the number of
    /// cores; in a durable worker's or a runner's own pool, its slots).
    pub fn process_limit(mut self, n: usize) -> Self {
        self.process = Some(n);
        self
    }

    /// The process-lane limit, unless one was set.
    pub(crate) fn process_limit_or(mut self, n: usize) -> Self {
        self.process.get_or_insert(n);
        self
    }

    /// Whether cpu-lane threads run at background priority (Linux `SCHED_IDLE`;
    /// default on), so CPU work never delays the async runtime's threads. Turn
    /// it off when other busy threads would starve the cpu lane.
    pub fn cpu_background(mut self, on: bool) -> Self {
        self.cpu_background = on;
        self
    }

    /// A pool-wide rate of task starts.
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Starts the pool. Must be called inside a tokio runtime.
    pub fn build(self) -> Result<Pool, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidConfig("a Pool must be built inside a tokio runtime".into())
        })?;
        let cores = available_cores();
        let config = PoolConfig {
            workers: self.workers,
            io: self.io.unwrap_or(self.workers),
            cpu: self.cpu.unwrap_or(cores),
            process: self.process.unwrap_or(cores),
            rate: self.rate,
        };
        for (what, n) in [
            ("workers", config.workers),
            ("io limit", config.io),
            ("cpu threads", config.cpu),
            ("process limit", config.process),
        ] {
            if n == 0 {
                return Err(Error::InvalidConfig(format!("{what} must be at least 1")));
            }
        }
        let rate = config.rate.map(RateLimiter::new).transpose()?;
        let (events, rx) = mpsc::unbounded_channel();
        let (ready, ready_rx) = ready_queue(config.workers);
        let board = Arc::new(Board::new(config.workers, events.clone()));
        for me in 0..config.workers {
            runtime.spawn(worker::run(ready_rx.clone(), board.clone(), me));
        }
        let shared = Arc::new(PoolShared {
            events,
            board,
            ready,
            ready_rx,
            fast_io: config.rate.is_none() && config.io >= config.workers,
            cpu: CpuPool::new(config.cpu, self.cpu_background)?,
            token: CancellationToken::new(),
            closing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            jobs: Mutex::new((Vec::new(), 64)),
        });
        let limits = DispatchLimits {
            lanes: [config.io, config.cpu, config.process],
            rate,
        };
        let dispatcher = Dispatcher::new(rx, shared.clone(), limits);
        runtime.spawn(dispatcher.run());
        Ok(Pool {
            _guard: Arc::new(DropGuard {
                shared: shared.clone(),
            }),
            shared,
            config: Arc::new(config),
        })
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks that were waiting and never started (reported as cancelled).
    pub not_started: u64,
    /// Attempts running when shutdown began.
    pub in_flight_at_start: u64,
    /// Attempts still running when the grace period ended, then cancelled.
    pub cancelled_in_flight: u64,
    /// Attempts (cpu closures that ignore cancellation) still running when
    /// shutdown gave up waiting for them.
    pub abandoned: u64,
}

impl Pool {
    /// A pool with the default configuration (50 workers).
    pub fn new() -> Result<Pool, Error> {
        Self::builder().build()
    }

    /// Configures a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The limit of one lane.
    pub fn lane_limit(&self, lane: Lane) -> usize {
        match lane {
            Lane::Io => self.config.io,
            Lane::Cpu => self.config.cpu,
            Lane::Process => self.config.process,
        }
    }

    /// Opens a job on this pool.
    pub fn job(&self) -> JobBuilder {
        JobBuilder::new(self.clone())
    }

    /// A snapshot of the pool's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.board.metrics.snapshot(self.shared.ready.len())
    }

    /// cpu-lane threads still alive.
    pub fn cpu_threads_alive(&self) -> usize {
        self.shared.cpu.alive()
    }

    /// Graceful shutdown: accept nothing new, cancel what has not started, let
    /// running attempts finish within `grace`, then cancel what still runs.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let shared = &self.shared;
        shared.closing.store(true, Ordering::SeqCst);
        shared.board.drain();
        let mut report = ShutdownReport {
            in_flight_at_start: shared.board.busy(),
            ..Default::default()
        };
        let (tx, rx) = oneshot::channel();
        let from_dispatcher = if shared.events.send(Event::Drain(tx)).is_ok() {
            rx.await.unwrap_or(0)
        } else {
            0
        };
        self.take_back_ready();
        if !self.wait_idle(grace).await {
            report.cancelled_in_flight = shared.board.busy();
            shared.stop();
            if !self.wait_idle(grace.max(Duration::from_secs(1))).await {
                report.abandoned = shared.board.busy();
            }
        }
        self.take_back_ready();
        report.not_started = from_dispatcher + shared.board.not_started();
        shared.stop();
        report
    }

    /// Reports every task no worker has picked up as never started.
    fn take_back_ready(&self) {
        while let Ok(Ready { env, slot }) = self.shared.ready_rx.try_recv() {
            self.shared.board.count_not_started(1);
            if let Some(release) = env.release(slot) {
                let _ = self.shared.events.send(Event::Released(release));
            }
            tokio::spawn(deliver_unstarted(env));
        }
    }

    /// Waits until no attempt runs, at most `limit`.
    async fn wait_idle(&self, limit: Duration) -> bool {
        let board = &self.shared.board;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = board.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if board.busy() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return board.busy() == 0;
            }
        }
    }

    /// Immediate shutdown: cancel every waiting and running task now.
    pub fn shutdown_now(&self) {
        self.shared.stop();
    }

    /// True once shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::SeqCst)
    }
}
