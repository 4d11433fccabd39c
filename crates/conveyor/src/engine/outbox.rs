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
//!
//! The outbox also holds what is left of the envelopes of the tasks it
//! settled, and lets go of them together when it hands its batches over (or
//! every [`MAX_HELD`]). Each was allocated by the producer's thread and holds
//! a reference to its job, whose count the producer increments for every
//! task: freeing each envelope as its task ends would move the allocator's
//! page bookkeeping and that count's cache lines between the producer's core
//! and the worker's for every task. A burst of one job's envelopes goes back
//! to the job, for its producers to free ([`crate::engine::spent`]); one that
//! mixes jobs, or that the job does not take, is freed here.
//!
//! Room is taken a few results at a time ([`ROOM_CHUNK`]): a worker running
//! one job's tasks back to back touches the queue's shared counter once per
//! chunk, not once per result. Room taken and not used yet is given back
//! whenever the outbox hands its batches over, and so before the worker
//! waits for anything: it never holds room another worker waits for.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use conveyor_core::OutcomeKind;

use crate::engine::envelope::Envelope;
use crate::engine::job_state::JobState;
use crate::engine::metrics::{LocalStats, Tally};
use crate::engine::spent::SpentEnvelopes;
use crate::engine::task_result::TaskResult;

/// Results a worker holds at most before handing them over.
const MAX_HELD: usize = 64;

/// Results a new batch has room for before it grows.
const BATCH_START: usize = MAX_HELD / 4;

/// Room in a result queue taken at most at once.
const ROOM_CHUNK: usize = 16;

/// Results per job, in the order they finished, and the worker's counts.
pub(crate) struct Outbox<'a> {
    batches: Vec<(Arc<JobState>, Vec<TaskResult>)>,
    /// Room taken in the result queue of the last batch's job and not used.
    room: usize,
    held: usize,
    /// What is left of settled tasks' envelopes, let go of together.
    spent: Vec<Box<Envelope>>,
    /// The return of the job whose envelopes the worker last handed back
    /// (it holds no job open: see [`SpentEnvelopes`]).
    return_to: Option<Arc<SpentEnvelopes>>,
    tally: Tally,
    /// The worker's stat block, where the tally goes.
    stats: &'a Mutex<LocalStats>,
}

impl<'a> Outbox<'a> {
    /// An empty outbox whose counts go to `stats`.
    pub(crate) fn new(stats: &'a Mutex<LocalStats>) -> Self {
        Self {
            batches: Vec::new(),
            room: 0,
            held: 0,
            spent: Vec::with_capacity(MAX_HELD),
            return_to: None,
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
    pub(crate) fn try_reserve(&mut self, job: &Arc<JobState>) -> bool {
        let Some(queue) = job.results.as_ref() else {
            return true;
        };
        match self.batches.last() {
            Some((j, _)) if Arc::ptr_eq(j, job) => {
                if self.room > 0 {
                    self.room -= 1;
                    return true;
                }
            }
            _ => self.give_back_room(),
        }
        let taken = queue.try_reserve_up_to(ROOM_CHUNK);
        self.room = taken.saturating_sub(1);
        taken > 0
    }

    /// Gives the room taken and not used back to its result queue.
    fn give_back_room(&mut self) {
        let room = std::mem::take(&mut self.room);
        if room > 0 {
            if let Some(queue) = self.batches.last().and_then(|(j, _)| j.results.as_ref()) {
                queue.give_back(room);
            }
        }
    }

    /// Hands over what the outbox holds, waits for room for `result` in its
    /// job's result queue, then keeps it for the next batch (and what is left
    /// of its task's envelope, `spent`, to let go of with the others).
    pub(crate) async fn post_waiting(&mut self, spent: Box<Envelope>, result: TaskResult) {
        self.flush();
        if let Some(queue) = spent.job.results.as_ref() {
            if queue.reserve().await {
                self.keep(&spent.job, result);
            }
            // Otherwise the result thread is gone: nobody can see the result.
        }
        self.let_go(spent);
    }

    /// Keeps a result whose room is reserved for the next batch (a job
    /// without a result queue has nowhere to send it: it is dropped).
    #[inline]
    pub(crate) fn keep(&mut self, job: &Arc<JobState>, result: TaskResult) {
        self.keep_made(job, || result);
    }

    /// Like [`Outbox::keep`], making the result where it is kept, not
    /// moving it there.
    #[inline]
    pub(crate) fn keep_made(&mut self, job: &Arc<JobState>, make: impl FnOnce() -> TaskResult) {
        if job.results.is_none() {
            return;
        }
        match self.batches.last_mut() {
            Some((j, batch)) if Arc::ptr_eq(j, job) => batch.push(make()),
            _ => {
                // Room for a quarter of a full batch at first: growing it
                // result by result would copy the results made so far four
                // times over, and room for a whole one would make every small
                // batch (a worker that goes idle after a result or two) as
                // big as a full one while it waits for the result thread
                // (measured: peak memory of a million no-op tasks 16-22 MB,
                // 18-20 MB this way, at the same rate).
                let mut batch = Vec::with_capacity(BATCH_START);
                batch.push(make());
                self.batches.push((job.clone(), batch));
            }
        }
        self.held += 1;
        if self.held >= MAX_HELD {
            self.flush();
        }
    }

    /// Keeps what is left of a settled task's envelope (its memory, and its
    /// reference to its job) until the next [`Outbox::flush`] (or until
    /// [`MAX_HELD`] are kept), to let go of many at once.
    #[inline]
    pub(crate) fn let_go(&mut self, spent: Box<Envelope>) {
        if self.spent.len() >= MAX_HELD {
            self.let_go_spent();
        }
        self.spent.push(spent);
    }

    /// Publishes the counts, then hands every held result to its job's result
    /// queue, then lets go of the settled tasks' job references.
    pub(crate) fn flush(&mut self) {
        self.tally.publish(self.stats);
        self.give_back_room();
        if self.held > 0 {
            self.held = 0;
            for (job, batch) in self.batches.drain(..) {
                if let Some(queue) = &job.results {
                    queue.send_reserved(batch);
                }
            }
        }
        self.let_go_spent();
    }

    /// Lets go of the settled envelopes held: back to their job when they are
    /// all of one job and it takes them, freed here otherwise.
    fn let_go_spent(&mut self) {
        let Some(first) = self.spent.first() else {
            return;
        };
        let job = &first.job;
        if self.spent.iter().all(|e| Arc::ptr_eq(&e.job, job)) {
            // The worker's own handle on the job's return, changed only when
            // the job changes: handing a burst over changes no count that
            // other threads change.
            let to = match &self.return_to {
                Some(to) if Arc::ptr_eq(to, &job.spent) => to,
                _ => self.return_to.insert(job.spent.clone()),
            };
            to.give(&mut self.spent);
        }
        // What the job did not take.
        self.spent.clear();
    }
}
