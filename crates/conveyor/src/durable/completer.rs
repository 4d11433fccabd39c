//! The completer: stores workers' reports in the backend in batches.
//!
//! The result thread decides each report and queues it here; the completer
//! takes everything waiting (up to [`BATCH`]) and makes one `finish` call, so a
//! durable store pays one commit for many tasks. A report is retried until the
//! backend takes it — a slot is given back only once its report is stored — and a
//! report refused as stale (the lease ran out and another worker holds the task)
//! is counted and dropped.
//!
//! A task's slot is given back when its report is queued here, not when it is
//! stored: the next reservation then overlaps this batch's `finish`, and a
//! group-committing store (the embedded one) writes both with one fsync. The
//! queue is bounded by the slot count, so a worker holds at most twice its slots
//! in leases: `slots` running, `slots` reported but not yet stored.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Error, Finish};

use super::shared::{Counters, WorkerShared};

/// Most reports in one `finish` call.
const BATCH: usize = 1024;

/// Runs until every sender of `rx` is gone and everything received is stored (or
/// `give_up` fires while the backend is failing).
pub(crate) async fn run(
    shared: Arc<WorkerShared>,
    rx: flume::Receiver<Finish>,
    give_up: tokio_util::sync::CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv_async().await {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        store(&shared, std::mem::take(&mut batch), &give_up).await;
    }
}

async fn store(
    shared: &WorkerShared,
    reports: Vec<Finish>,
    give_up: &tokio_util::sync::CancellationToken,
) {
    let mut pause = Duration::from_millis(50);
    loop {
        match shared.backend.finish(reports.clone()).await {
            Ok(results) => {
                let mut stale = 0;
                for r in results {
                    match r {
                        Ok(()) => {}
                        Err(Error::StaleLease(_)) => stale += 1,
                        Err(e) => tracing::warn!(error = %e, "the backend refused a report"),
                    }
                }
                Counters::add(&shared.counters.stale, stale);
                return;
            }
            Err(e) => {
                Counters::add(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, reports = reports.len(), "storing reports failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = give_up.cancelled() => {
                        tracing::error!(reports = reports.len(), "gave up storing reports: their leases will expire and the tasks run again");
                        return;
                    }
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}
