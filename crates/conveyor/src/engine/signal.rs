//! How a cancellation reaches the worker running the task.
//!
//! Each worker has a [`WorkerSignal`] on a cache line of its own: which job and
//! task its current attempt belongs to, and the worker's waker while that
//! attempt waits. A canceller records the cancellation first (the task's id in
//! its job's `Cancels`, the job's flag, or the pool's), then wakes the workers
//! whose signal names what it cancelled; a woken attempt re-checks and ends as
//! cancelled. So a waiting attempt registers nothing shared: no lock and no
//! waiter list that every running attempt of a job would contend on, only an
//! uncontended waker slot of its own worker. (Handlers awaiting
//! `TaskContext::cancelled` still use the job's `Notify`, which cancellations
//! signal too.)
//!
//! No wake-up is lost: the worker publishes what it runs before its attempt's
//! first poll and registers its waker before every check of the cancellation;
//! the canceller records the cancellation before it reads the signals. A
//! sequentially consistent fence on each side, between its write and its
//! read, means either the canceller sees the worker (and wakes it), or the
//! worker sees the cancellation. So publishing is two plain stores per task:
//! the fence is paid only by an attempt that waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// One worker's cancellation wake-up.
#[repr(align(64))]
#[derive(Debug, Default)]
pub(crate) struct WorkerSignal {
    /// The job (the address of its `Cancels`) of the current or last attempt.
    job: AtomicUsize,
    /// The task id of the current or last attempt.
    task: AtomicU64,
    /// The worker's waker while its attempt waits.
    waker: AtomicWaker,
}

impl WorkerSignal {
    /// Publishes that the worker now runs task `task` of job `job` (before the
    /// attempt's first poll). Left as is afterwards: a cancellation that
    /// matches a finished attempt only wakes the worker for nothing.
    pub(crate) fn running(&self, job: usize, task: u64) {
        // Ordered before the attempt's check of the cancellation by the fence
        // in `Cancelled::poll`, the only check that can miss a wake-up.
        self.job.store(job, Ordering::Relaxed);
        self.task.store(task, Ordering::Relaxed);
    }

    /// Wakes the worker if it runs an attempt of `job` (and of task `task`,
    /// if given). Call after recording the cancellation.
    pub(crate) fn wake_if(&self, job: usize, task: Option<u64>) {
        fence(Ordering::SeqCst);
        if self.job.load(Ordering::SeqCst) == job
            && task.is_none_or(|t| self.task.load(Ordering::SeqCst) == t)
        {
            self.waker.wake();
        }
    }

    /// Wakes the worker whatever it runs (the pool stops).
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        self.waker.wake();
    }

    /// Completes once `cancelled()` is true, re-checked whenever the worker
    /// is woken. For the worker's own attempt only.
    pub(crate) fn cancelled<F: Fn() -> bool>(&self, cancelled: F) -> Cancelled<'_, F> {
        Cancelled {
            signal: self,
            cancelled,
        }
    }
}

/// The future of [`WorkerSignal::cancelled`].
pub(crate) struct Cancelled<'a, F> {
    signal: &'a WorkerSignal,
    cancelled: F,
}

impl<F: Fn() -> bool> Future for Cancelled<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.waker.register(cx.waker());
        fence(Ordering::SeqCst);
        if (self.cancelled)() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancellation_wakes_the_worker_that_runs_the_task() {
        let signal = Arc::new(WorkerSignal::default());
        let flag = Arc::new(AtomicBool::new(false));
        signal.running(7, 1);
        let waiter = tokio::spawn({
            let (signal, flag) = (signal.clone(), flag.clone());
            async move { signal.cancelled(|| flag.load(Ordering::SeqCst)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        // Another job's or another task's cancellation does not end it.
        signal.wake_if(8, None);
        signal.wake_if(7, Some(2));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        flag.store(true, Ordering::SeqCst);
        signal.wake_if(7, Some(1));
        waiter.await.expect("the wait ended");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wake_up_is_lost_when_a_cancellation_races_the_wait() {
        for round in 0..2_000u64 {
            let signal = Arc::new(WorkerSignal::default());
            let flag = Arc::new(AtomicBool::new(false));
            signal.running(1, round);
            let waiter = tokio::spawn({
                let (signal, flag) = (signal.clone(), flag.clone());
                async move { signal.cancelled(|| flag.load(Ordering::SeqCst)).await }
            });
            if round % 2 == 0 {
                tokio::task::yield_now().await;
            }
            flag.store(true, Ordering::SeqCst);
            signal.wake_if(1, Some(round));
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("a wake-up was lost")
                .expect("the wait ended");
        }
    }
}
