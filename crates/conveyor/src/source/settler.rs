//! The settler: gives the source the runner's settlements in batches.
//!
//! The sink queues each settlement; the settler takes everything waiting (up
//! to [`BATCH`]) and makes one `settle` call, so a durable store pays one
//! commit for many tasks. A batch is tried again until the source takes it,
//! and a settlement refused as stale (the claim ran out and the task is
//! someone else's now) is counted and dropped. A settlement is counted by
//! its action only once the source has taken it.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::Error;
use tokio_util::sync::CancellationToken;

use super::contract::{Settlement, Source};
use super::shared::RunnerShared;
use super::stats::Counters;

/// Most settlements in one `settle` call.
const BATCH: usize = 1024;

/// Runs until `closing` fires and nothing is left queued (or `give_up` fires
/// while the source is failing).
pub(crate) async fn run<S: Source>(
    shared: Arc<RunnerShared<S>>,
    rx: flume::Receiver<Settlement<S::Receipt>>,
    closing: CancellationToken,
    give_up: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            biased;
            r = rx.recv_async() => match r {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = closing.cancelled() => match rx.try_recv() {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let n = batch.len();
        store(&shared, std::mem::take(&mut batch), &give_up).await;
        shared.slots.stored(n);
    }
}

/// Settles a batch: a failure that may pass (an outage, contention) is
/// retried with a growing pause until the source takes the batch or
/// `give_up` fires; a failure that will not pass (bad data, a refusal) is
/// narrowed down by settling the batch's items one by one, so one bad
/// settlement does not hold back the others. One that still fails alone is
/// dropped: its claim runs out and the task runs again.
async fn store<S: Source>(
    shared: &RunnerShared<S>,
    batch: Vec<Settlement<S::Receipt>>,
    give_up: &CancellationToken,
) {
    let mut pause = Duration::from_millis(50);
    loop {
        match shared.source.settle(batch.clone()).await {
            Ok(results) => {
                let mut stale = 0;
                for (settlement, r) in batch.iter().zip(results) {
                    match r {
                        // Counted once the source has it, so a worker's
                        // counts agree with the store.
                        Ok(()) => shared.counters.settled(&settlement.action),
                        Err(Error::StaleLease(_)) => stale += 1,
                        Err(e) => {
                            tracing::warn!(error = %e.chain(), "the source refused a settlement")
                        }
                    }
                }
                Counters::add(&shared.counters.stale, stale);
                return;
            }
            Err(e) if !e.is_transient() => {
                Counters::add(&shared.counters.backend_errors, 1);
                if batch.len() == 1 {
                    tracing::error!(error = %e.chain(), task = %batch[0].id, "settling failed (not transient); dropped: the claim will run out and the task run again");
                    return;
                }
                tracing::warn!(error = %e.chain(), settlements = batch.len(), "settling a batch failed (not transient); settling its items one by one");
                for one in batch {
                    Box::pin(store(shared, vec![one], give_up)).await;
                }
                return;
            }
            Err(e) => {
                Counters::add(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e.chain(), settlements = batch.len(), "settling failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = give_up.cancelled() => {
                        tracing::error!(settlements = batch.len(), "gave up settling: the claims will run out and the tasks run again");
                        return;
                    }
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}
