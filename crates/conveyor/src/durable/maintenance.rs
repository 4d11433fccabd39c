//! The maintenance loop: expired leases back to work, old tasks pruned.
//!
//! Every worker runs it; the operations are idempotent, so several workers on one
//! backend only share the work. Due scheduled and retrying tasks need no loop:
//! every reservation promotes them first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Retention};
use tokio::time::Instant;

/// How often the loop runs its steps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) recover_every: Duration,
    pub(crate) prune_every: Duration,
    pub(crate) retention: Retention,
}

/// Runs until `done` fires; counts failed calls in `errors`.
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    schedule: Schedule,
    errors: Arc<AtomicU64>,
    done: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(schedule.recover_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.cancelled() => return,
        }
        match backend.recover_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "recovered tasks whose lease expired"),
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "recovering expired leases failed");
            }
        }
        if last_prune.is_none_or(|t| t.elapsed() >= schedule.prune_every) {
            last_prune = Some(Instant::now());
            match backend.prune(schedule.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(tasks = n, "pruned finished tasks past retention"),
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "pruning failed");
                }
            }
        }
    }
}
