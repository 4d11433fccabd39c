//! Cancellation of single tasks, by id, one record per job.
//!
//! A task handle costs no allocation of its own: cancelling it records the
//! task's id in its job's [`Cancels`] (a counter read lock-free on hot paths,
//! and a set looked at only once the counter is non-zero). The same record's
//! `Notify` is the one thing a waiting attempt registers on: it is signalled
//! when a task of the job is cancelled, when the job is cancelled and when the
//! pool stops, and the woken attempt re-checks whether it is concerned.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Weak;

use parking_lot::Mutex;
use tokio::sync::Notify;

use conveyor_core::TaskId;

use crate::engine::envelope::Event;
use crate::engine::instance::Engine;

/// One job's cancelled task ids and its waiting attempts' wake-up. Aligned
/// to a cache line, so the counter workers read for every task never shares
/// one with the `Arc`'s counts, which every task handle changes.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Cancels {
    /// How many ids `ids` holds: zero means no task was cancelled by id.
    count: AtomicUsize,
    /// Ids of tasks cancelled through their handles. Kept for the job's
    /// lifetime, so a handle reports its cancellation even after the outcome
    /// (a source runner forgets an id once its outcome is in, see
    /// [`Cancels::forget`]).
    ids: Mutex<HashSet<u64>>,
    /// Signalled on any cancellation that concerns the job.
    notify: Notify,
    /// To ask the dispatcher to sweep its queues.
    pool: Weak<Engine>,
}

impl Cancels {
    pub(crate) fn new(pool: Weak<Engine>) -> Self {
        Self {
            count: AtomicUsize::new(0),
            ids: Mutex::new(HashSet::new()),
            notify: Notify::new(),
            pool,
        }
    }

    /// Cancels one task: records its id, wakes the job's waiting attempts and
    /// asks the dispatcher to sweep.
    pub(crate) fn cancel(&self, id: TaskId) {
        if self.ids.lock().insert(id.0) {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        self.wake(Some(id.0));
        if let Some(pool) = self.pool.upgrade() {
            let _ = pool.events.send(Event::Sweep);
        }
    }

    /// Forgets that task `id` was cancelled, once its outcome is in: a source
    /// may deliver a task of the same id again.
    pub(crate) fn forget(&self, id: TaskId) {
        if self.ids.lock().remove(&id.0) {
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The job's identity for worker signals: this record's address.
    pub(crate) fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// True once task `id` was cancelled by id.
    pub(crate) fn contains(&self, id: TaskId) -> bool {
        self.count.load(Ordering::SeqCst) != 0 && self.ids.lock().contains(&id.0)
    }

    /// Wakes every waiting attempt of the job (the job was cancelled).
    pub(crate) fn wake_all(&self) {
        self.wake(None);
    }

    /// Wakes the handlers waiting in `TaskContext::cancelled` and the workers
    /// running an attempt of the job (of task `task` only, if given).
    fn wake(&self, task: Option<u64>) {
        self.wake_handlers();
        if let Some(pool) = self.pool.upgrade() {
            for signal in pool.board.signals.iter() {
                signal.wake_if(self.id(), task);
            }
        }
    }

    /// Wakes the job's handlers waiting in `TaskContext::cancelled` (the pool
    /// stops, and wakes every worker itself).
    pub(crate) fn wake_handlers(&self) {
        self.notify.notify_waiters();
    }

    /// Completes once `concerned()` is true, re-checked at each signal.
    pub(crate) async fn wait(&self, concerned: impl Fn() -> bool) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if concerned() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiter_wakes_only_for_what_concerns_it() {
        let c = Arc::new(Cancels::new(Weak::new()));
        let (me, other) = (TaskId(1), TaskId(2));
        let woke = Arc::new(AtomicBool::new(false));
        let waiter = tokio::spawn({
            let (c, woke) = (c.clone(), woke.clone());
            async move {
                c.wait(|| c.contains(me)).await;
                woke.store(true, Ordering::SeqCst);
            }
        });
        tokio::task::yield_now().await;
        c.cancel(other);
        tokio::task::yield_now().await;
        assert!(!woke.load(Ordering::SeqCst));
        assert!(c.contains(other) && !c.contains(me));
        c.cancel(me);
        waiter.await.expect("waiter finished");
        assert!(woke.load(Ordering::SeqCst));
        // Already cancelled: completes at once.
        c.wait(|| c.contains(me)).await;
    }
}
