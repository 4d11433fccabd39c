//! Maintenance: the backend's upkeep duties, run by every worker on its own
//! schedule — expired leases back to work ([`recover`]), finished tasks past
//! their retention deleted ([`prune`]).
//!
//! Each duty is idempotent, so several workers on one backend only share the
//! work. A backend without the [`Maintenance`] part needs no upkeep (a broker
//! redelivers and expires by itself): the loop does not run at all, rather
//! than failing every tick. Due scheduled and retrying tasks need no duty:
//! every reservation promotes them first.

mod prune;
mod recover;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Maintenance, Retention};
use futures_util::future::BoxFuture;
use tokio::time::Instant;

/// How often the duties run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) recover_every: Duration,
    pub(crate) prune_every: Duration,
    pub(crate) retention: Retention,
}

/// One upkeep duty.
trait Duty: Send + Sync {
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// How often it runs.
    fn every(&self) -> Duration;
    /// Runs it once; how many tasks it touched.
    fn run<'a>(
        &'a self,
        store: &'a dyn Maintenance,
    ) -> BoxFuture<'a, Result<u64, conveyor_core::Error>>;
}

/// Runs the duties until `done` fires; counts failed calls in `errors`.
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    schedule: Schedule,
    errors: Arc<AtomicU64>,
    done: tokio_util::sync::CancellationToken,
) {
    let Some(store) = backend.maintenance() else {
        tracing::debug!(
            backend = backend.kind(),
            "no maintenance part: no upkeep loop"
        );
        return;
    };
    let duties: Vec<Box<dyn Duty>> = vec![
        Box::new(recover::Recover {
            every: schedule.recover_every,
        }),
        Box::new(prune::Prune {
            every: schedule.prune_every,
            retention: schedule.retention,
        }),
    ];
    let tick_every = duties
        .iter()
        .map(|d| d.every())
        .min()
        .unwrap_or(Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Vec<Option<Instant>> = vec![None; duties.len()];
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.cancelled() => return,
        }
        for (duty, last) in duties.iter().zip(last.iter_mut()) {
            // Half a tick of slack: a duty due every tick runs every tick.
            let due_after = duty.every().saturating_sub(tick_every / 2);
            if last.is_some_and(|t| t.elapsed() < due_after) {
                continue;
            }
            *last = Some(Instant::now());
            match duty.run(store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(duty = duty.name(), tasks = n, "maintenance"),
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(duty = duty.name(), error = %e.chain(), "maintenance failed");
                }
            }
        }
    }
}
