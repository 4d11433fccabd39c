//! What a runner counts over its life, and the snapshot it gives out.

use std::sync::atomic::{AtomicU64, Ordering};

use conveyor_core::FinishAction;

/// Counts of a runner's (a durable worker's, a stream consumer's) life so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunnerStats {
    /// Tasks fetched (reserved).
    pub reserved: u64,
    /// Tasks completed (every count below is of settlements the source has
    /// taken: they agree with the store).
    pub completed: u64,
    /// Attempts that failed and were settled for a retry.
    pub retried: u64,
    /// Tasks dead-lettered.
    pub dead: u64,
    /// Tasks the handler discarded.
    pub discarded: u64,
    /// Tasks handed back (unstarted, or cancelled).
    pub released: u64,
    /// Settlements the source refused because the claim had moved on.
    pub stale: u64,
    /// Claims found lost while renewing.
    pub lost_leases: u64,
    /// Settlements the source never took: given up on at the stop (the
    /// store did not answer in time) or refused for good with no failed
    /// attempt to put in their place. Their claims run out and the tasks
    /// run again.
    pub unstored: u64,
    /// Calls to the source that failed (and were retried).
    pub backend_errors: u64,
    /// Results not given to a slow `on_task_complete` callback (the source
    /// still got every settlement).
    pub callbacks_dropped: u64,
    /// Fetched tasks not settled yet (running, or waiting in the engine).
    pub in_flight: usize,
    /// Settled tasks whose settlement the source has not taken yet: their
    /// claims are still held in the store.
    pub settling: usize,
    /// Tasks asked for by fetches that have not answered yet (the store may
    /// have claimed them already).
    pub fetching: usize,
    /// Of those, the tasks whose attempt has started (the rest wait for a
    /// limit, their key's turn or a free lane).
    pub running: u64,
}

/// The live counters behind [`RunnerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) reserved: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) lost_leases: AtomicU64,
    pub(crate) unstored: AtomicU64,
    pub(crate) backend_errors: AtomicU64,
    pub(crate) callbacks_dropped: AtomicU64,
    /// A gauge: held tasks whose attempt has started.
    pub(crate) running: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one settlement the source has taken, by its action.
    pub(crate) fn settled(&self, action: &FinishAction) {
        Self::add(
            match action {
                FinishAction::Complete { .. } => &self.completed,
                FinishAction::Retry { .. } => &self.retried,
                FinishAction::Discard { .. } => &self.discarded,
                FinishAction::Release => &self.released,
                FinishAction::DeadLetter { .. } => &self.dead,
            },
            1,
        );
    }

    pub(crate) fn snapshot(
        &self,
        in_flight: usize,
        settling: usize,
        fetching: usize,
    ) -> RunnerStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RunnerStats {
            reserved: get(&self.reserved),
            completed: get(&self.completed),
            retried: get(&self.retried),
            dead: get(&self.dead),
            discarded: get(&self.discarded),
            released: get(&self.released),
            stale: get(&self.stale),
            lost_leases: get(&self.lost_leases),
            unstored: get(&self.unstored),
            backend_errors: get(&self.backend_errors),
            callbacks_dropped: get(&self.callbacks_dropped),
            in_flight,
            settling,
            fetching,
            running: get(&self.running),
        }
    }
}
