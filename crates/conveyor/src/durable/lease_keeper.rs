//! The lease keeper: renews the leases of reserved tasks while they run.
//!
//! Every third of the lease it renews every lease the worker holds in one call.
//! A lease the backend no longer honours (it expired and another worker took the
//! task) cancels the engine task: its report would be refused anyway, and the
//! work is now someone else's.

use std::sync::Arc;

use conveyor_core::Lease;

use super::shared::{Counters, WorkerShared};

/// Runs until `shared.stop` and then `done` fire.
pub(crate) async fn run(shared: Arc<WorkerShared>, done: tokio_util::sync::CancellationToken) {
    let every = (shared.lease / 3).max(std::time::Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.cancelled() => return,
        }
        let held: Vec<(conveyor_core::TaskId, Lease)> = shared
            .inflight
            .lock()
            .iter()
            .map(|(id, f)| (*id, f.lease))
            .collect();
        if held.is_empty() {
            continue;
        }
        let leases: Vec<Lease> = held.iter().map(|(_, l)| *l).collect();
        match shared.backend.renew(&leases, shared.lease).await {
            Ok(kept) => {
                for ((engine_id, lease), ok) in held.iter().zip(kept) {
                    if ok {
                        continue;
                    }
                    Counters::add(&shared.counters.lost_leases, 1);
                    tracing::warn!(task = %lease.id, "lease lost; cancelling the attempt");
                    if let Some(f) = shared.inflight.lock().get(engine_id) {
                        if let Some(h) = &f.handle {
                            h.cancel();
                        }
                    }
                }
            }
            Err(e) => {
                Counters::add(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, "renewing leases failed");
            }
        }
    }
}
