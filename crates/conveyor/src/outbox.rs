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

use crate::envelope::JobShared;
use crate::metrics::{LocalStats, Tally};
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

    /// Takes room for `result` in its job's result queue (handing over what the
    /// outbox holds first if it has to wait), then keeps it for the next batch.
    /// True if it had to wait.
    pub(crate) async fn post(&mut self, job: Arc<JobShared>, result: TaskResult) -> bool {
        let Some(queue) = job.results.as_ref() else {
            return false;
        };
        if !queue.try_reserve() {
            self.flush();
            if !queue.reserve().await {
                // The result thread is gone: nobody can see the result.
                return true;
            }
            self.keep(job, result);
            return true;
        }
        self.keep(job, result);
        false
    }

    fn keep(&mut self, job: Arc<JobShared>, result: TaskResult) {
        match self.batches.last_mut() {
            Some((j, batch)) if Arc::ptr_eq(j, &job) => batch.push(result),
            _ => self.batches.push((job, vec![result])),
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
