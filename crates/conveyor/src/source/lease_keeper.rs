//! The lease keeper: renews the claims on held tasks while they run, and
//! on settled ones whose outcome the settler is still retrying to store.
//!
//! Every third of the lease it renews every claim the runner holds in one
//! call. A claim the source no longer honours (an operator cancelled the
//! task, or the claim ran out and another worker took it) cancels the
//! attempt: its settlement would be refused anyway, and the task is no
//! longer this worker's to run. A source without leases has
//! no keeper.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::TaskId;
use tokio_util::sync::CancellationToken;

use super::contract::Source;
use super::runner_state::RunnerState;
use super::stats::Counters;
use super::ticker::Ticker;

/// Runs until `done` fires.
pub(crate) async fn run<S: Source>(
    shared: Arc<RunnerState<S>>,
    lease: Duration,
    done: CancellationToken,
) {
    let mut tick = Ticker::new(lease / 3);
    while tick.next(&done).await {
        let held = shared.held.receipts();
        // Settled tasks whose outcome waits to be stored keep their claims
        // too (renewed after the running ones; their answers change nothing).
        let unstored = shared.unstored.lock().clone();
        if held.is_empty() && unstored.is_empty() {
            continue;
        }
        if !renew_held(&shared, &held, &unstored, &done).await {
            return;
        }
    }
}

/// Renews the claims of `held` (task, generation, receipt) and then of
/// `unstored` in one call, and cancels the attempts of the held ones whose
/// claim is gone (if still the same delivery). False when `done` fired
/// first (a renewal the store leaves unanswered does not hold up a stop).
pub(crate) async fn renew_held<S: Source>(
    shared: &RunnerState<S>,
    held: &[(TaskId, u64, S::Receipt)],
    unstored: &[S::Receipt],
    done: &CancellationToken,
) -> bool {
    let receipts: Vec<S::Receipt> = held
        .iter()
        .map(|(_, _, r)| r.clone())
        .chain(unstored.iter().cloned())
        .collect();
    let renewed = tokio::select! {
        renewed = shared.source.renew(&receipts) => renewed,
        () = done.cancelled() => return false,
    };
    match renewed {
        Ok(kept) => {
            for ((id, generation, _), ok) in held.iter().zip(kept) {
                if ok {
                    continue;
                }
                let cancelled = shared
                    .held
                    .cancel_if(*id, *generation, |id| shared.cancel_task(id));
                if cancelled {
                    Counters::add(&shared.counters.lost_leases, 1);
                    tracing::warn!(
                        task = %id,
                        "lease ended (the task was cancelled, or another worker \
                         took it); stopping the attempt"
                    );
                }
            }
        }
        Err(e) => {
            Counters::add(&shared.counters.backend_errors, 1);
            tracing::warn!(error = %e.chain(), "renewing leases failed");
        }
    }
    true
}
