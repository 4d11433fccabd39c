//! The fetcher: takes only as many tasks from the source as the runner has
//! free slots, and hands them to the engine.
//!
//! Backpressure reaches the source: nothing is fetched that cannot start.
//! When the source has nothing, the fetcher waits for its wake-up or the poll
//! interval, whichever comes first. A fetch is never abandoned half-way: what
//! the source handed out comes back, to be started or handed back unstarted
//! when the runner is stopping.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::FinishAction;
use tokio::time::Instant;

use super::contract::{Delivery, Source};
use super::held::Inserted;
use super::routes::Routes;
use super::shared::RunnerShared;
use super::stats::Counters;

/// The longest pause between two fetches that failed.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// How the fetcher asks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchConfig {
    /// Most tasks per fetch.
    pub(crate) batch: usize,
    /// Longest wait between two fetches while the source is empty.
    pub(crate) poll: Duration,
}

/// Runs until the runner stops.
pub(crate) async fn run<S: Source>(
    shared: Arc<RunnerShared<S>>,
    routes: Arc<Routes<S::Payload>>,
    cfg: FetchConfig,
) {
    let mut error_pause = Duration::from_millis(50);
    while !shared.stop.is_cancelled() {
        let free = shared.slots.free();
        if free == 0 {
            tokio::select! {
                _ = shared.slots.wait_free() => {}
                _ = shared.stop.cancelled() => return,
            }
            continue;
        }
        let fetched = shared.source.fetch(free.min(cfg.batch)).await;
        if shared.stop.is_cancelled() {
            if let Ok(tasks) = fetched {
                hand_back(&shared, tasks);
            }
            return;
        }
        match fetched {
            Ok(tasks) if tasks.is_empty() => idle(&shared, cfg.poll).await,
            Ok(tasks) => {
                error_pause = Duration::from_millis(50);
                Counters::add(&shared.counters.reserved, tasks.len() as u64);
                shared.slots.take(tasks.len());
                start_all(&shared, &routes, tasks);
            }
            Err(e) => {
                Counters::add(&shared.counters.backend_errors, 1);
                if e.is_transient() {
                    tracing::warn!(error = %e.chain(), "fetching tasks failed; retrying");
                } else {
                    // Not an outage: trying again soon will not help. Keep
                    // trying, slowly, so a fix on the store side is picked up.
                    tracing::error!(error = %e.chain(), "fetching tasks failed (not transient); retrying every few seconds");
                    error_pause = MAX_PAUSE;
                }
                tokio::select! {
                    _ = tokio::time::sleep(error_pause) => {}
                    _ = shared.stop.cancelled() => return,
                }
                error_pause = (error_pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

/// Hands back tasks fetched just as the runner began to stop, without
/// counting an attempt.
fn hand_back<S: Source>(shared: &RunnerShared<S>, tasks: Vec<Delivery<S::Payload, S::Receipt>>) {
    shared.slots.take(tasks.len());
    for task in tasks {
        shared.settle_unheld(task, FinishAction::Release);
    }
}

/// Waits for a sign of new work, at most `poll`.
async fn idle<S: Source>(shared: &RunnerShared<S>, poll: Duration) {
    let began = Instant::now();
    tokio::select! {
        woke = shared.source.wait_for_work(poll) => {
            // A source without wake-ups answers at once: poll instead.
            if !woke {
                let left = poll.saturating_sub(began.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    _ = shared.stop.cancelled() => {}
                }
            }
        }
        _ = shared.stop.cancelled() => {}
    }
}

/// Holds and starts each fetched task, or settles the ones that cannot run.
fn start_all<S: Source>(
    shared: &RunnerShared<S>,
    routes: &Routes<S::Payload>,
    tasks: Vec<Delivery<S::Payload, S::Receipt>>,
) {
    let producer = shared.producer();
    for task in tasks {
        let Some(route) = routes.get(&task.handler) else {
            let error = format!(
                "no handler named {:?} is registered on this worker (it has: {})",
                task.handler,
                routes.names().join(", ")
            );
            tracing::warn!(task = %task.id, %error, "dead-lettering");
            shared.settle_unheld(task, FinishAction::DeadLetter { error });
            continue;
        };
        match shared
            .held
            .insert(task, route.clone(), |id| shared.cancel_task(id))
        {
            Inserted::Start(task, route) => shared.start(&producer, task, &route),
            Inserted::Parked { replaced } => {
                tracing::warn!("a task was delivered again while its earlier attempt still ran here: that attempt is cancelled, the new one waits for it");
                if replaced {
                    // The delivery it replaced holds a slot and settles nothing.
                    shared.slots.settled(1, false);
                }
            }
        }
    }
}
