//! A worker's finished results that are not yet in their jobs' result queues.
//!
//! Attempts that finish one after another without waiting leave their results
//! here, and the worker hands them over as one batch per job: before it waits
//! for anything (an empty ready queue, an attempt that is not done on its first
//! poll, room in a result queue), before it frees a key (so the next task of
//! the key never reports before this one), and every [`MAX_HELD`] results. Each
//! result has taken its room in the job's result queue before it lands here, so
//! the queue's bound holds for results waiting in outboxes too; each batch also
//! holds its job open until it is sent. The worker's outcome counts for the
//! pool's metrics ([`Tally`]) are published first, so a job's summary never
//! arrives before its counts.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use conveyor_core::OutcomeKind;

use crate::engine::envelope::JobShared;
use crate::engine::metrics::{LocalStats, Tally};
use crate::results::TaskResult;

/// Results a worker holds at most before handing them over.
const MAX_HELD: usize = 64;

/// Results per job, in the order they finished, and the worker's counts.
pub(crate) struct Outbox<'a> {
    batches: Vec<(Arc<JobShared>, Vec<TaskResult>)>,
    held: usize,
    tally: Tally,
    /// The worker's stat block, where the tally goes.
    stats: &'a Mutex<LocalStats>,
}

impl<'a> Outbox<'a> {
    /// An empty outbox whose counts go to `stats`.
    pub(crate) fn new(stats: &'a Mutex<LocalStats>) -> Self {
        Self {
            batches: Vec::new(),
            held: 0,
            tally: Tally::default(),
            stats,
        }
    }

    /// Counts what an attempt ended with for the pool's metrics.
    pub(crate) fn count(&mut self, outcome: Option<(OutcomeKind, Duration)>, retried: bool) {
        let mut full = false;
        if let Some((kind, latency)) = outcome {
            full = self.tally.outcome(kind, latency);
        }
        if retried {
            self.tally.retried();
        }
        if full {
            self.tally.publish(self.stats);
        }
    }

    /// Takes room for one result in `job`'s result queue if there is some
    /// now (a job without a queue always has room); then [`Outbox::keep`] the
    /// result, or else hand it to [`Outbox::post_waiting`].
    pub(crate) fn try_reserve(job: &JobShared) -> bool {
        job.results.as_ref().is_none_or(|queue| queue.try_reserve())
    }

    /// Hands over what the outbox holds, waits for room for `result` in its
    /// job's result queue, then keeps it for the next batch.
    pub(crate) async fn post_waiting(&mut self, job: Arc<JobShared>, result: TaskResult) {
        self.flush();
        let Some(queue) = job.results.as_ref() else {
            return;
        };
        if queue.reserve().await {
            self.keep(&job, result);
        }
        // Otherwise the result thread is gone: nobody can see the result.
    }

    /// Keeps a result whose room is reserved for the next batch (a job
    /// without a result queue has nowhere to send it: it is dropped).
    #[inline]
    pub(crate) fn keep(&mut self, job: &Arc<JobShared>, result: TaskResult) {
        if job.results.is_none() {
            return;
        }
        match self.batches.last_mut() {
            Some((j, batch)) if Arc::ptr_eq(j, job) => batch.push(result),
            _ => self.batches.push((job.clone(), vec![result])),
        }
        self.held += 1;
        if self.held >= MAX_HELD {
            self.flush();
        }
    }

    /// Publishes the counts, then hands every held result to its job's result
    /// queue.
    pub(crate) fn flush(&mut self) {
        self.tally.publish(self.stats);
        if self.held == 0 {
            return;
        }
        self.held = 0;
        for (job, batch) in self.batches.drain(..) {
            if let Some(queue) = &job.results {
                queue.send_reserved(batch);
            }
        }
    }
}
