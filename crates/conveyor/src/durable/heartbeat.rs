//! The worker's heartbeat: every few seconds it writes who it is and how busy
//! it is — tasks running, tasks reserved, counts so far — to the backend's
//! worker registry, and a last entry marked stopped when it stops. That is
//! how `conveyor status` (or any process) tells running tasks from reserved
//! ones and live workers from gone ones. A backend without the registry part
//! gets no heartbeats; a failed heartbeat is counted and tried at the next
//! beat, never stopping the worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Timestamp, WorkerInfo, FORGET_WORKERS_AFTER};
use tokio_util::sync::CancellationToken;

use crate::source::{RunnerHandle, RunnerStats};

/// How often a worker writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Who a worker is, for its entry.
pub(crate) fn describe(
    id: String,
    queues: &[String],
    handlers: &[String],
    slots: usize,
) -> WorkerInfo {
    let mut info = WorkerInfo::new(
        id,
        super::maintenance::host(),
        std::process::id(),
        Timestamp::now(),
    );
    info.version = env!("CARGO_PKG_VERSION").to_string();
    info.queues = queues.to_vec();
    info.handlers = handlers.to_vec();
    info.handlers.sort();
    info.slots = u32::try_from(slots).unwrap_or(u32::MAX);
    info
}

fn fill(info: &mut WorkerInfo, stats: RunnerStats) {
    info.running = stats.running;
    info.reserved = stats.in_flight as u64;
    info.completed = stats.completed;
    info.failed = stats.retried + stats.dead;
    info.heartbeat_at = Timestamp::now();
}

/// Beats until `done` fires, then writes the stopped entry.
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    mut info: WorkerInfo,
    handle: RunnerHandle,
    errors: Arc<AtomicU64>,
    done: CancellationToken,
) {
    let Ok(registry) = backend.registry() else {
        return;
    };
    let forget_before = Timestamp::now().minus(FORGET_WORKERS_AFTER);
    if let Err(e) = registry.forget_workers(forget_before).await {
        errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %e.chain(), "forgetting old workers failed");
    }
    loop {
        fill(&mut info, handle.stats());
        if let Err(e) = registry.heartbeat(&info).await {
            errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e.chain(), "a heartbeat failed; trying at the next beat");
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = done.cancelled() => break,
        }
    }
    fill(&mut info, handle.stats());
    info.stopped = true;
    if let Err(e) = registry.heartbeat(&info).await {
        errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %e.chain(), "the last heartbeat failed");
    }
}
