//! The cpu lane's bounded pool of OS threads.
//!
//! The dispatcher never hands it more closures than it has threads, so nothing
//! queues here and the async runtime never runs CPU-heavy work. Threads exit when
//! the pool's last handle is dropped and their current closure returns; a thread
//! cannot be pre-empted, so long closures should watch
//! [`TaskContext::is_cancelled`](crate::TaskContext::is_cancelled).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use conveyor_core::Error;

type CpuWork = Box<dyn FnOnce() + Send>;

/// The number of cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Puts the calling thread in the `SCHED_IDLE` class: it runs whenever a core
/// would otherwise idle, but yields at once to the runtime's threads. Measured
/// here with both cores busy with cpu-lane work, this keeps a 1 ms runtime
/// ticker's p99 lateness near idle (ordinary priority or `nice` did not), at no
/// cost in cpu-lane throughput when the runtime is mostly waiting. The trade-off:
/// if other threads keep every core busy, cpu-lane work waits for them.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 means the calling thread; the call only changes its policy.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::debug!("cpu lane: SCHED_IDLE unavailable; running at normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// A fixed set of named worker threads fed through a channel.
pub(crate) struct CpuPool {
    tx: flume::Sender<CpuWork>,
    alive: Arc<AtomicUsize>,
}

/// Decrements the live-thread count when a thread ends, even by unwinding.
struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CpuPool {
    /// Starts `threads` threads; with `background`, at the lowest scheduling
    /// priority (see [`lower_priority`]).
    pub(crate) fn new(threads: usize, background: bool) -> Result<Self, Error> {
        let (tx, rx) = flume::unbounded::<CpuWork>();
        let alive = Arc::new(AtomicUsize::new(0));
        for i in 0..threads {
            let rx = rx.clone();
            alive.fetch_add(1, Ordering::SeqCst);
            let guard = AliveGuard(alive.clone());
            std::thread::Builder::new()
                .name(format!("conveyor-cpu-{i}"))
                .spawn(move || {
                    let _guard = guard;
                    if background {
                        lower_priority();
                    }
                    while let Ok(work) = rx.recv() {
                        work();
                    }
                })?;
        }
        Ok(Self { tx, alive })
    }

    /// Runs `work` on a free thread.
    pub(crate) fn execute(&self, work: CpuWork) -> Result<(), Error> {
        self.tx.send(work).map_err(|_| Error::ShuttingDown)
    }

    /// Threads still running.
    pub(crate) fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }
}
