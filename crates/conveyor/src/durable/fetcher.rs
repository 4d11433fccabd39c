//! The fetcher: reserves only as many tasks as the worker has free slots and
//! hands them to the engine.
//!
//! Backpressure reaches the store: nothing is reserved that cannot start. When
//! the queues are empty the fetcher waits for the backend's wake-up (same-process
//! enqueues) or the poll interval (other processes), whichever comes first.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Finish, FinishAction, Reserved, TaskId, TaskOptions};
use tokio::time::Instant;

use crate::job::Producer;

use super::registry::{Registry, StartError};
use super::shared::{Counters, InFlight, WorkerShared};

/// How the fetcher asks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchConfig {
    /// Most tasks per reservation.
    pub(crate) batch: usize,
    /// Longest wait between two reservations while the queues are empty.
    pub(crate) poll: Duration,
}

/// Runs until `shared.stop` fires.
pub(crate) async fn run(
    shared: Arc<WorkerShared>,
    registry: Arc<Registry>,
    producer: Producer,
    reports: flume::Sender<Finish>,
    cfg: FetchConfig,
) {
    let mut error_pause = Duration::from_millis(50);
    while !shared.stop.is_cancelled() {
        let free = shared.free_slots();
        if free == 0 {
            let freed = shared.freed.notified();
            if shared.free_slots() == 0 {
                tokio::select! {
                    _ = freed => {}
                    _ = shared.stop.cancelled() => return,
                }
            }
            continue;
        }
        let want = free.min(cfg.batch);
        // Never abandoned half-way: a reservation the store committed must come
        // back to be started or released, or its tasks would sit running until
        // their leases expired. (Backend calls are bounded by their timeouts.)
        let reserved = shared
            .backend
            .reserve(&shared.queues, want, shared.lease)
            .await;
        if shared.stop.is_cancelled() {
            if let Ok(tasks) = reserved {
                release_unstarted(&shared, &reports, tasks).await;
            }
            return;
        }
        match reserved {
            Ok(tasks) if tasks.is_empty() => idle(&shared, cfg.poll).await,
            Ok(tasks) => {
                error_pause = Duration::from_millis(50);
                shared.busy.fetch_add(tasks.len(), Ordering::AcqRel);
                Counters::add(&shared.counters.reserved, tasks.len() as u64);
                for task in tasks {
                    start(&shared, &registry, &producer, &reports, task).await;
                }
            }
            Err(e) => {
                Counters::add(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, "reserving tasks failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(error_pause) => {}
                    _ = shared.stop.cancelled() => return,
                }
                error_pause = (error_pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Hands back tasks reserved just as the worker began to stop, without
/// counting an attempt.
async fn release_unstarted(
    shared: &WorkerShared,
    reports: &flume::Sender<Finish>,
    tasks: Vec<Reserved>,
) {
    Counters::add(&shared.counters.released, tasks.len() as u64);
    for task in tasks {
        let finish = Finish {
            lease: task.lease,
            action: FinishAction::Release,
        };
        let _ = reports.send_async(finish).await;
    }
}

/// Waits for a sign of new work, at most `poll`.
async fn idle(shared: &WorkerShared, poll: Duration) {
    let began = Instant::now();
    tokio::select! {
        woke = shared.backend.wait_for_work(&shared.queues, poll) => {
            // A backend without wake-ups returns at once: poll instead.
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

/// Hands one reserved task to the engine, or reports why it cannot run.
async fn start(
    shared: &WorkerShared,
    registry: &Registry,
    producer: &Producer,
    reports: &flume::Sender<Finish>,
    task: Reserved,
) {
    let lease = task.lease;
    let Some(handler) = registry.get(&task.handler) else {
        let error = format!(
            "no handler named {:?} is registered on this worker (it has: {})",
            task.handler,
            registry.names().join(", ")
        );
        tracing::warn!(task = %lease.id, %error, "dead-lettering");
        Counters::add(&shared.counters.dead, 1);
        let _ = reports
            .send_async(Finish {
                lease,
                action: FinishAction::DeadLetter { error },
            })
            .await;
        shared.release_slots(1);
        return;
    };
    let id = TaskId::next();
    let mut opts = TaskOptions::new().max_attempts(1);
    if let Some(t) = task.timeout {
        opts = opts.timeout(t);
    }
    shared.inflight.lock().insert(
        id,
        InFlight {
            lease,
            queue: task.queue,
            attempt: task.attempt,
            handler: handler.clone(),
            handle: None,
        },
    );
    let action = match handler.start(producer, id, &task.payload, opts) {
        Ok(handle) => {
            if let Some(f) = shared.inflight.lock().get_mut(&id) {
                f.handle = Some(handle);
            }
            return;
        }
        Err(StartError::Decode(e)) => {
            tracing::warn!(task = %lease.id, error = %e, "undecodable payload; dead-lettering");
            Counters::add(&shared.counters.dead, 1);
            FinishAction::DeadLetter {
                error: e.to_string(),
            }
        }
        Err(StartError::Refused(e)) => {
            tracing::debug!(task = %lease.id, error = %e, "the engine refused the task; releasing");
            Counters::add(&shared.counters.released, 1);
            FinishAction::Release
        }
    };
    shared.inflight.lock().remove(&id);
    let _ = reports.send_async(Finish { lease, action }).await;
    shared.release_slots(1);
}
