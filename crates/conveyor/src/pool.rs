//! The pool: workers, lanes and pool-wide limits, shared by every job on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use conveyor_core::{Error, Lane};

use crate::cpu_pool::CpuPool;
use crate::dispatcher::{DispatchLimits, Dispatcher};
use crate::envelope::Event;
use crate::job::JobBuilder;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::rate::{Rate, RateLimiter};

/// The default number of workers: tasks running at once across all lanes.
pub const DEFAULT_WORKERS: usize = 50;

/// The dispatcher's inbox.
pub(crate) type EventSender = mpsc::UnboundedSender<Event>;

/// What every job and task of a pool shares.
pub(crate) struct PoolShared {
    pub(crate) events: EventSender,
    pub(crate) metrics: Metrics,
    pub(crate) cpu: CpuPool,
    /// Cancelled on immediate shutdown (and when the last `Pool` handle drops).
    pub(crate) token: CancellationToken,
    /// Set once shutdown begins: no new submissions.
    pub(crate) closing: AtomicBool,
    /// Set with `token`, so hot paths can check it without a lock.
    pub(crate) stopped: AtomicBool,
}

impl PoolShared {
    /// Immediate stop: no new submissions; everything is cancelled.
    pub(crate) fn stop(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.stopped.store(true, Ordering::SeqCst);
        self.token.cancel();
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
    in_flight: watch::Receiver<usize>,
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

    /// process-lane limit: child processes at once (default: the number of cores).
    pub fn process_limit(mut self, n: usize) -> Self {
        self.process = Some(n);
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
        let shared = Arc::new(PoolShared {
            events,
            metrics: Metrics::default(),
            cpu: CpuPool::new(config.cpu, self.cpu_background)?,
            token: CancellationToken::new(),
            closing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let (in_flight_tx, in_flight) = watch::channel(0);
        let limits = DispatchLimits {
            workers: config.workers,
            lanes: [config.io, config.cpu, config.process],
            rate,
        };
        let dispatcher = Dispatcher::new(rx, shared.clone(), limits, in_flight_tx);
        runtime.spawn(dispatcher.run());
        Ok(Pool {
            _guard: Arc::new(DropGuard {
                shared: shared.clone(),
            }),
            shared,
            in_flight,
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
        self.shared.metrics.snapshot()
    }

    /// cpu-lane threads still alive.
    pub fn cpu_threads_alive(&self) -> usize {
        self.shared.cpu.alive()
    }

    /// Graceful shutdown: accept nothing new, cancel what has not started, let
    /// running attempts finish within `grace`, then cancel what still runs.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.shared.closing.store(true, Ordering::SeqCst);
        let mut report = ShutdownReport {
            in_flight_at_start: *self.in_flight.borrow() as u64,
            ..Default::default()
        };
        let (tx, rx) = oneshot::channel();
        if self.shared.events.send(Event::Drain(tx)).is_err() {
            return report;
        }
        let mut in_flight = self.in_flight.clone();
        let drained = tokio::time::timeout(grace, async {
            let _ = in_flight.wait_for(|n| *n == 0).await;
        })
        .await;
        if drained.is_err() {
            report.cancelled_in_flight = *in_flight.borrow() as u64;
            self.shared.stop();
            let stopped = tokio::time::timeout(grace.max(Duration::from_secs(1)), async {
                let _ = in_flight.wait_for(|n| *n == 0).await;
            })
            .await;
            if stopped.is_err() {
                report.abandoned = *in_flight.borrow() as u64;
            }
        }
        report.not_started = rx.await.unwrap_or(0);
        self.shared.stop();
        report
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
