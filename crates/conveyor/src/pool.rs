//! The pool: workers, lanes and pool-wide limits, shared by every job on it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Error, Lane, Rate};

use crate::engine::instance::{Engine, EngineLimits};
use crate::engine::metrics::MetricsSnapshot;
use crate::engine::shutdown::ShutdownReport;
use crate::lane::cpu::available_cores;

/// The default number of workers: tasks running at once across all lanes.
pub const DEFAULT_WORKERS: usize = 50;

/// Cancels the pool when the last user handle is dropped.
struct DropGuard {
    engine: Arc<Engine>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.engine.stop();
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
    pub(crate) engine: Arc<Engine>,
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
        let engine = Engine::start(
            &runtime,
            EngineLimits {
                workers: config.workers,
                io: config.io,
                cpu: config.cpu,
                process: config.process,
                rate: config.rate,
                cpu_background: self.cpu_background,
            },
        )?;
        Ok(Pool {
            _guard: Arc::new(DropGuard {
                engine: engine.clone(),
            }),
            engine,
            config: Arc::new(config),
        })
    }
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

    /// A snapshot of the pool's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.engine.board.metrics.snapshot(self.engine.ready.len())
    }

    /// cpu-lane threads still alive.
    pub fn cpu_threads_alive(&self) -> usize {
        self.engine.cpu.alive()
    }

    /// Graceful shutdown: accept nothing new, cancel what has not started, let
    /// running attempts finish within `grace`, then cancel what still runs.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.engine.shutdown(grace).await
    }

    /// Immediate shutdown: cancel every waiting and running task now.
    pub fn shutdown_now(&self) {
        self.engine.stop();
    }

    /// True once shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.engine.closing.load(Ordering::SeqCst)
    }
}
