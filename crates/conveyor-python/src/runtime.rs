//! The one tokio runtime of a Python process, and blocking on it without
//! holding the GIL.
//!
//! A forked child inherits the parent's runtime without its threads, so the
//! runtime is per process id: after a fork the child builds its own (the
//! parent's is left alone; it cannot be shut down from a process that has
//! none of its threads).

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// The runtime and the process it was built in.
static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// How often a blocking call looks for a signal (Ctrl-C) to deliver.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// This process's runtime, built on first use.
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock();
    if let Some((owner, rt)) = *slot {
        if owner == pid {
            return Ok(rt);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("conveyor-python")
        .build()
        .map_err(|e| crate::errors::conveyor_error(&format!("cannot start the runtime: {e}")))?;
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    Ok(rt)
}

/// Runs `fut` to its end on the runtime with the GIL released, delivering
/// signals meanwhile: a Ctrl-C during a long wait raises `KeyboardInterrupt`
/// (and drops the future) instead of hanging until it ends.
pub(crate) fn block_on<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send,
    T: Send,
{
    let rt = runtime()?;
    py.detach(|| {
        rt.block_on(async {
            tokio::pin!(fut);
            // The first check is one period away: an interval's immediate
            // first tick would wait for the timer driver (about a
            // millisecond), longer than most calls take.
            let first = tokio::time::Instant::now() + SIGNAL_CHECK;
            let mut tick = tokio::time::interval_at(first, SIGNAL_CHECK);
            loop {
                tokio::select! {
                    biased;
                    out = &mut fut => return out,
                    _ = tick.tick() => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    })
}
