//! What a runner's parts share: the source, its routes, the held tasks, the
//! slots, the settlement queue, the counts, and the engine job the tasks run
//! in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use conveyor_core::{FinishAction, TaskId, TaskOptions};

use crate::engine::cancel::Cancels;
use crate::engine::job_state::JobState;
use crate::events::EventBus;
use crate::job::Producer;

use super::callbacks::{Callbacks, Settled};
use super::contract::{Delivery, Retries, Settlement, Source};
use super::control::ControlOps;
use super::held::Held;
use super::routes::{Route, StartError};
use super::settler::Queued;
use super::slots::Slots;
use super::stats::{Counters, RunnerStats};

/// The fetcher, the sink, the settler and the lease keeper of one runner.
pub(crate) struct RunnerState<S: Source> {
    pub(crate) source: Arc<S>,
    pub(crate) retries: Retries,
    pub(crate) held: Held<S::Payload, S::Receipt>,
    pub(crate) slots: Slots,
    pub(crate) counters: Counters,
    /// Settlements for the settler (its occupancy is bounded by [`Slots`]).
    pub(crate) settlements: flume::Sender<Queued<S::Receipt>>,
    /// The claims of settled tasks the settler is retrying to store: the
    /// lease keeper renews them with the running tasks' (empty, and never
    /// touched, while the store takes settlements at once).
    pub(crate) unstored: parking_lot::Mutex<Vec<S::Receipt>>,
    /// The user's `on_task_complete`, off the settlement path.
    pub(crate) callbacks: Option<Callbacks>,
    /// The engine job the tasks run in (its sink holds this weakly).
    pub(crate) job: Arc<JobState>,
    /// Cancels single tasks of the job.
    pub(crate) cancels: Arc<Cancels>,
    /// Stop fetching (a graceful stop has begun).
    pub(crate) stop: CancellationToken,
    /// The grace period ran out: running tasks are being cancelled.
    pub(crate) aborting: AtomicBool,
    /// Lifecycle events.
    pub(crate) events: EventBus,
}

impl<S: Source> ControlOps for RunnerState<S> {
    fn cancel(&self, id: TaskId) -> bool {
        self.held.cancel(id, |id| self.cancel_task(id))
    }

    fn events(&self) -> &EventBus {
        &self.events
    }
}

impl<S: Source> RunnerState<S> {
    /// A producer for the engine job.
    pub(crate) fn producer(&self) -> Producer {
        Producer::new(self.job.clone())
    }

    /// Cancels the running attempt of task `id` (the caller has marked its
    /// held entry cancelled).
    pub(crate) fn cancel_task(&self, id: TaskId) {
        self.cancels.cancel(id);
    }

    /// True once the grace period ran out.
    pub(crate) fn is_aborting(&self) -> bool {
        self.aborting.load(Ordering::Acquire)
    }

    /// Counts so far.
    pub(crate) fn stats(&self) -> RunnerStats {
        self.counters
            .snapshot(self.slots.busy(), self.slots.queued(), self.slots.asked())
    }

    /// Hands a held delivery to the engine; one that cannot start is settled
    /// at once (dead-lettered when its payload does not decode, handed back
    /// when the engine refuses it).
    pub(crate) fn start(
        &self,
        producer: &Producer,
        delivery: Delivery<S::Payload, S::Receipt>,
        route: &Route<S::Payload>,
    ) {
        let id = delivery.id;
        let mut opts = TaskOptions::new().max_attempts(match self.retries {
            Retries::BySource => 1,
            _ => route.max_attempts(delivery.max_attempts),
        });
        if let Some(t) = delivery.timeout {
            opts = opts.timeout(t);
        }
        let action = match route.start(producer, id, &delivery.payload, opts) {
            Ok(()) => return,
            Err(StartError::Decode(e)) => {
                let error = format!(
                    "handler {}: cannot decode the params: {e}",
                    delivery.handler
                );
                tracing::warn!(task = %id, %error, "dead-lettering");
                FinishAction::DeadLetter { error }
            }
            Err(StartError::Refused(e)) => {
                tracing::debug!(task = %id, error = %e, "the engine refused the task; handing it back");
                FinishAction::Release
            }
        };
        if let Some(entry) = self.held.forget(id) {
            self.queue(
                Settlement {
                    id,
                    handler: route.name.clone(),
                    receipt: entry.receipt,
                    attempts: 0,
                    outcome: None,
                    action,
                    follow_ups: Vec::new(),
                },
                None,
            );
        }
    }

    /// Settles a delivery that never reaches the engine (no such handler, or
    /// fetched as the runner stops).
    pub(crate) fn settle_unheld(
        &self,
        delivery: Delivery<S::Payload, S::Receipt>,
        action: FinishAction,
    ) {
        self.queue(
            Settlement {
                id: delivery.id,
                handler: Arc::from(delivery.handler.as_str()),
                receipt: delivery.receipt,
                attempts: 0,
                outcome: None,
                action,
                follow_ups: Vec::new(),
            },
            None,
        );
    }

    /// Queues a settlement (with the settled task for the user's callback,
    /// told once the source has answered) and gives the task's slot back.
    pub(crate) fn queue(&self, settlement: Settlement<S::Receipt>, settled: Option<Settled>) {
        let queued = self
            .settlements
            .send(Queued::new(settlement, settled))
            .is_ok();
        self.slots.settled(1, queued);
    }
}
