//! Envelopes of settled tasks handed back to their job's producers, to be
//! freed on the thread that allocated them.
//!
//! A producer allocates an envelope for every task it submits, and a worker,
//! on another core, is done with it once the task is settled. Freed there,
//! each envelope goes onto the allocator's list of blocks that other threads
//! freed, and the producer's next allocations walk that list block by block,
//! each a cache miss that waits on the one before (mimalloc's page collect:
//! 6.5% of the no-op path's CPU time); the job's reference count, which the
//! producer increments for each envelope, also moved between the cores for
//! each decrement. So a worker hands its settled envelopes (the outbox's
//! bursts of up to 64, all of one job) back to the job, and the producer frees
//! them the next time it submits, with one lock per burst: the blocks go onto
//! its own free list and the count stays on its core.
//!
//! The return is open only while the job has producers: a held envelope holds
//! its job, so the last producer to go closes the return and frees what it
//! holds, and from then on workers free envelopes themselves. Jobs without
//! producers (map helpers, pipelines, a source's job) never open it. At most
//! [`MAX_HELD`] envelopes are held; a worker whose burst finds the return full
//! (the producers are not submitting) frees it itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::engine::envelope::{Envelope, Padded};

/// Envelopes held at most (about 150 KB of no-op tasks').
pub(crate) const MAX_HELD: usize = 1024;

/// A job's return of settled envelopes.
pub(crate) struct SpentEnvelopes {
    /// Set while bursts wait: producers read it for every task, so it is on
    /// a cache line of its own.
    waiting: Padded<AtomicBool>,
    /// The envelopes handed back; `None` while the return is closed.
    held: Padded<Mutex<Option<Vec<Box<Envelope>>>>>,
    /// The job's [`Producer`](crate::Producer)s: the last to go closes the
    /// return.
    producers: AtomicUsize,
}

impl SpentEnvelopes {
    /// A closed return: workers free their envelopes themselves.
    pub(crate) fn closed() -> Self {
        Self {
            waiting: Padded(AtomicBool::new(false)),
            held: Padded(Mutex::new(None)),
            producers: AtomicUsize::new(0),
        }
    }

    /// Counts a new producer of the job.
    pub(crate) fn producer_joined(&self) {
        self.producers.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a producer gone; the last one closes the return.
    pub(crate) fn producer_left(&self) {
        if self.producers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }

    /// Opens the return (a job's producers exist).
    pub(crate) fn open(&self) {
        let mut held = self.held.lock();
        if held.is_none() {
            // Room is made by the first burst: a job that never settles a
            // task allocates nothing here.
            *held = Some(Vec::new());
        }
    }

    /// Closes the return and frees what it holds (the job's last producer is
    /// gone).
    pub(crate) fn close(&self) {
        let held = self.held.lock().take();
        self.waiting.store(false, Ordering::Release);
        drop(held);
    }

    /// Takes a worker's burst of envelopes (emptying `burst`); leaves it
    /// when the return is closed or has no room for it, for the caller to
    /// free.
    pub(crate) fn give(&self, burst: &mut Vec<Box<Envelope>>) {
        let mut held = self.held.lock();
        if let Some(held) = held.as_mut() {
            if held.len() + burst.len() <= MAX_HELD {
                // Room for the most it holds, made once: grown burst by
                // burst, its buffers moved between the workers that grew it
                // and the producer that frees it (measured: 9 MB more peak
                // memory for a million tasks).
                held.reserve_exact(MAX_HELD - held.len());
                held.append(burst);
                self.waiting.store(true, Ordering::Release);
            }
        }
    }

    /// Frees the bursts handed back, if any: called by producers.
    #[inline]
    pub(crate) fn free_returned(&self) {
        if self.waiting.load(Ordering::Acquire) {
            self.free_returned_now();
        }
    }

    #[cold]
    fn free_returned_now(&self) {
        let taken = {
            let mut held = self.held.lock();
            self.waiting.store(false, Ordering::Release);
            match held.as_mut() {
                Some(held) => std::mem::replace(held, Vec::with_capacity(MAX_HELD)),
                None => return,
            }
        };
        // Freed outside the lock, so workers handing bursts back never wait
        // on it.
        drop(taken);
    }

    /// Envelopes held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> Option<usize> {
        self.held.lock().as_ref().map(Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::sync::Arc;

    use conveyor_core::TaskId;
    use tokio::time::Instant;

    use super::*;
    use crate::engine::job_state::JobState;
    use crate::engine::testing::on_a_pool;
    use crate::{Handler, TaskError};

    /// `n` settled-looking envelopes of `job`.
    fn burst(job: &Arc<JobState>, n: usize) -> Vec<Box<Envelope>> {
        let handler = Handler::io("h", |i: u64, _ctx| async move { Ok::<_, TaskError>(i) });
        (0..n)
            .map(|_| {
                let env: Box<Envelope> = Box::new(Envelope::new(
                    TaskId::next(),
                    handler.core.clone(),
                    None,
                    None,
                    1,
                    None,
                    Instant::now(),
                    job.clone(),
                    None,
                    false,
                    Some(1u64),
                ));
                env as Box<Envelope<dyn Any + Send>>
            })
            .collect()
    }

    #[test]
    fn a_burst_handed_back_is_freed_by_a_producer_with_its_job_references() {
        on_a_pool(|pool| {
            let job = JobState::new(&pool.engine, 1, None, None);
            job.spent.open();
            let mut b = burst(&job, 3);
            job.spent.give(&mut b);
            assert!(b.is_empty(), "taken");
            job.spent.give(&mut burst(&job, 2));
            assert_eq!(job.spent.held(), Some(5));
            assert_eq!(Arc::strong_count(&job), 6, "held envelopes hold the job");
            job.spent.free_returned();
            assert_eq!(job.spent.held(), Some(0));
            assert_eq!(Arc::strong_count(&job), 1, "freed with their references");
            job.spent.free_returned();
            assert_eq!(job.spent.held(), Some(0), "nothing waiting: nothing to do");
        });
    }

    #[test]
    fn a_closed_or_full_return_leaves_the_burst() {
        on_a_pool(|pool| {
            let job = JobState::new(&pool.engine, 1, None, None);
            let mut b = burst(&job, 2);
            job.spent.give(&mut b);
            assert_eq!(b.len(), 2, "closed at first");
            job.spent.open();
            job.spent.give(&mut burst(&job, MAX_HELD - 1));
            let mut b = burst(&job, 2);
            job.spent.give(&mut b);
            assert_eq!(b.len(), 2, "no room for the whole burst");
            let mut b = burst(&job, 1);
            job.spent.give(&mut b);
            assert!(b.is_empty(), "room for this one");
            job.spent.free_returned();
            let mut b = burst(&job, 2);
            job.spent.give(&mut b);
            assert!(b.is_empty(), "room again");
        });
    }

    #[test]
    fn closing_frees_what_is_held_and_refuses_the_rest() {
        on_a_pool(|pool| {
            let job = JobState::new(&pool.engine, 1, None, None);
            job.spent.open();
            job.spent.give(&mut burst(&job, 4));
            job.spent.close();
            assert_eq!(job.spent.held(), None);
            assert_eq!(
                Arc::strong_count(&job),
                1,
                "the cycle through the job is gone"
            );
            let mut b = burst(&job, 1);
            job.spent.give(&mut b);
            assert_eq!(b.len(), 1, "closed for good");
            drop(b);
            job.spent.free_returned();
            assert_eq!(Arc::strong_count(&job), 1);
        });
    }
}
