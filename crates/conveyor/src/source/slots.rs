//! A runner's slots: how many fetched tasks it may hold at once.
//!
//! A fetch sets aside the slots it asks for until it answers; then a slot
//! is held by each task it gave, until the task's settlement is queued.
//! A slot is taken when a task is fetched and given back when its settlement
//! is queued, not when it is stored: the next fetch then overlaps the store's
//! write of this batch (a group-committing store writes both with one
//! commit). So that a slow store still slows fetching, settlements queued
//! beyond one per slot count against the free slots: a runner holds at most
//! twice its slots in claims, `slots` running and `slots` settled but not yet
//! stored. Nothing here waits while holding anything: the engine's workers
//! give slots back without blocking.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Slots, held tasks and queued settlements.
#[derive(Debug)]
pub(crate) struct Slots {
    slots: usize,
    /// Fetched tasks whose settlement is not queued yet.
    busy: AtomicUsize,
    /// Slots asked for by fetches that have not answered yet.
    asked: AtomicUsize,
    /// Settlements queued and not yet stored.
    queued: AtomicUsize,
    /// Signalled whenever either count goes down.
    freed: Notify,
}

impl Slots {
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            slots,
            busy: AtomicUsize::new(0),
            asked: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Tasks the runner may hold at once.
    pub(crate) fn total(&self) -> usize {
        self.slots
    }

    /// Tasks that may be fetched now.
    pub(crate) fn free(&self) -> usize {
        let busy = self.busy.load(Ordering::Acquire) + self.asked.load(Ordering::Acquire);
        let backlog = self
            .queued
            .load(Ordering::Acquire)
            .saturating_sub(self.slots);
        self.slots.saturating_sub(busy + backlog)
    }

    /// Fetched tasks not settled yet.
    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    /// Settlements queued and not yet stored.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Slots set aside for fetches out.
    pub(crate) fn asked(&self) -> usize {
        self.asked.load(Ordering::Acquire)
    }

    /// A fetch asks for `n` tasks: their slots are set aside until it answers.
    pub(crate) fn ask(&self, n: usize) {
        self.asked.fetch_add(n, Ordering::AcqRel);
    }

    /// A fetch that asked for `asked` tasks gave `got` (at most `asked`):
    /// they hold their slots now, and the rest are free again.
    pub(crate) fn answered(&self, asked: usize, got: usize) {
        self.busy.fetch_add(got, Ordering::AcqRel);
        self.asked.fetch_sub(asked, Ordering::AcqRel);
        if got < asked {
            self.freed.notify_waiters();
        }
    }

    /// `n` tasks are settled: their settlements are queued (`queued`) or
    /// there is nothing to store (a dropped delivery).
    pub(crate) fn settled(&self, n: usize, queued: bool) {
        if queued {
            self.queued.fetch_add(n, Ordering::AcqRel);
        }
        self.busy.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_waiters();
    }

    /// `n` queued settlements were stored (or given up on).
    pub(crate) fn stored(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_waiters();
    }

    /// Waits until `n` slots (at least one) may be free: returns at once if
    /// they are, else once a count goes down.
    pub(crate) async fn wait_free(&self, n: usize) {
        let freed = self.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if self.free() < n.max(1) {
            freed.await;
        }
    }

    /// Waits until no fetched task is unsettled, or `deadline` passes; true
    /// if none is left.
    pub(crate) async fn drained(&self, deadline: Instant) -> bool {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.busy() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.busy() == 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_of_settlements_beyond_the_slots_counts_against_them() {
        let s = Slots::new(4);
        s.ask(4);
        s.answered(4, 4);
        assert_eq!(s.free(), 0);
        s.settled(4, true);
        assert_eq!(s.free(), 4, "up to one queued settlement per slot is free");
        s.ask(4);
        s.answered(4, 4);
        s.settled(4, true);
        assert_eq!(s.free(), 0, "8 queued: 4 beyond the slots");
        s.stored(3);
        assert_eq!(s.free(), 3);
        s.stored(5);
        s.ask(1);
        s.answered(1, 1);
        s.settled(1, false);
        assert_eq!((s.free(), s.busy()), (4, 0));
    }

    #[test]
    fn a_fetch_out_sets_its_slots_aside_until_it_answers() {
        let s = Slots::new(4);
        s.ask(3);
        assert_eq!((s.free(), s.busy()), (1, 0), "asked for, not yet held");
        s.answered(3, 2);
        assert_eq!((s.free(), s.busy()), (2, 2), "one asked for and not given");
        s.ask(2);
        s.answered(2, 0);
        assert_eq!(s.free(), 2);
    }
}
