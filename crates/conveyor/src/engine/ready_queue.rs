//! The pool's ready queue: tasks allowed to start, waiting for a worker.
//!
//! Many producers (the job fast path, the dispatcher) and every worker share
//! it, and a pool may have thousands of idle workers waiting on it at once. So
//! a waiting worker costs O(1) to park and to wake, whatever the number of idle
//! workers: each worker has its own waker slot (by worker number) and idle
//! workers are a stack of numbers, most recently idle on top (its cache is the
//! warmest). A channel that scans its list of waiters whenever one stops
//! waiting (as `flume` does) spends half a million steps waking the first wave
//! of a 1,000-worker pool, and as many again tearing it down.
//!
//! A send wakes at most one idle worker, outside the lock. A woken worker that
//! finds the queue empty (a busy worker took the task first) parks again; one
//! that is dropped after being woken passes the wake-up on, so no task waits
//! while a worker idles.
//!
//! The queue is unbounded: each job's capacity permits cap what its tasks hold
//! here, and the dispatcher hands over only what its limits allow. Dropping the
//! [`ReadySender`] closes it: waiting workers see the end once it is empty.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

struct State<T> {
    items: VecDeque<T>,
    /// The waker of each waiting worker, by worker number.
    wakers: Vec<Option<Waker>>,
    /// Numbers of waiting workers, most recent last. May hold numbers whose
    /// waker is gone (a worker that stopped waiting): they are skipped.
    idle: Vec<usize>,
    closed: bool,
}

impl<T> State<T> {
    /// Takes the waker of the most recently idle worker, if any waits.
    fn pop_idle(&mut self) -> Option<Waker> {
        while let Some(me) = self.idle.pop() {
            if let Some(waker) = self.wakers[me].take() {
                return Some(waker);
            }
        }
        None
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

/// The sending side, held once by the pool; dropping it closes the queue.
pub(crate) struct ReadySender<T>(Arc<Shared<T>>);

/// The receiving side: every worker, and the pool taking back unstarted tasks.
pub(crate) struct ReadyReceiver<T>(Arc<Shared<T>>);

impl<T> Clone for ReadyReceiver<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> std::fmt::Debug for ReadySender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadySender").finish_non_exhaustive()
    }
}

/// A new ready queue for workers numbered `0..workers`.
pub(crate) fn ready_queue<T>(workers: usize) -> (ReadySender<T>, ReadyReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            wakers: (0..workers).map(|_| None).collect(),
            idle: Vec::with_capacity(workers),
            closed: false,
        }),
    });
    (ReadySender(shared.clone()), ReadyReceiver(shared))
}

impl<T> ReadySender<T> {
    /// Queues a task and wakes one idle worker, if one waits.
    pub(crate) fn send(&self, item: T) {
        let waker = {
            let mut state = self.0.state.lock();
            state.items.push_back(item);
            state.pop_idle()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Tasks waiting for a worker.
    pub(crate) fn len(&self) -> usize {
        self.0.state.lock().items.len()
    }
}

impl<T> Drop for ReadySender<T> {
    /// Closes the queue and wakes every waiting worker to see it.
    fn drop(&mut self) {
        let wakers: Vec<Waker> = {
            let mut state = self.0.state.lock();
            state.closed = true;
            state.idle.clear();
            state.wakers.iter_mut().filter_map(Option::take).collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Why nothing was received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Empty {
    /// Nothing is queued now.
    Now,
    /// Nothing is queued and the queue is closed: nothing ever will be.
    ForGood,
}

impl<T> ReadyReceiver<T> {
    /// A queued task, if there is one now.
    pub(crate) fn try_recv(&self) -> Result<T, Empty> {
        let mut state = self.0.state.lock();
        match state.items.pop_front() {
            Some(item) => Ok(item),
            None if state.closed => Err(Empty::ForGood),
            None => Err(Empty::Now),
        }
    }

    /// Waits as worker number `me` for a task; `None` once the queue is closed
    /// and empty. Only one wait per worker number at a time.
    pub(crate) fn recv(&self, me: usize) -> Recv<'_, T> {
        Recv {
            shared: &self.0,
            me,
            parked: false,
        }
    }
}

/// The future of [`ReadyReceiver::recv`].
pub(crate) struct Recv<'a, T> {
    shared: &'a Shared<T>,
    me: usize,
    /// True while this wait may hold a waker slot or a wake-up meant for it.
    parked: bool,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let me = self.me;
        let mut state = self.shared.state.lock();
        if let Some(item) = state.items.pop_front() {
            state.wakers[me] = None;
            drop(state);
            self.parked = false;
            return Poll::Ready(Some(item));
        }
        if state.closed {
            drop(state);
            self.parked = false;
            return Poll::Ready(None);
        }
        match &mut state.wakers[me] {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => *waker = cx.waker().clone(),
            slot @ None => {
                *slot = Some(cx.waker().clone());
                state.idle.push(me);
            }
        }
        drop(state);
        self.parked = true;
        Poll::Pending
    }
}

impl<T> Drop for Recv<'_, T> {
    /// A wait dropped before it got its task gives up its slot; if it had been
    /// woken already, the wake-up goes to another idle worker.
    fn drop(&mut self) {
        if !self.parked {
            return;
        }
        let waker = {
            let mut state = self.shared.state.lock();
            match state.wakers[self.me].take() {
                Some(_) => None,
                None if !state.items.is_empty() => state.pop_idle(),
                None => None,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn items_come_out_in_order_and_the_end_is_seen_once_empty() {
        let (tx, rx) = ready_queue::<u32>(1);
        tx.send(1);
        tx.send(2);
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.try_recv(), Ok(1));
        drop(tx);
        assert_eq!(rx.recv(0).await, Some(2));
        assert_eq!(rx.try_recv(), Err(Empty::ForGood));
        assert_eq!(rx.recv(0).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_reaches_one_of_many_waiting_workers() {
        let workers = 200;
        let (tx, rx) = ready_queue::<u64>(workers);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for me in 0..workers {
            let (rx, done) = (rx.clone(), done_tx.clone());
            tokio::spawn(async move {
                let mut sum = 0;
                while let Some(n) = rx.recv(me).await {
                    sum += n;
                    if n % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                let _ = done.send(sum);
            });
        }
        drop(done_tx);
        // Let every worker park first, then feed them in bursts.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for burst in 0..50u64 {
            for i in 0..100 {
                tx.send(burst * 100 + i + 1);
            }
            tokio::task::yield_now().await;
        }
        drop(tx);
        let mut total = 0;
        while let Some(sum) = done_rx.recv().await {
            total += sum;
        }
        assert_eq!(total, (1..=5_000u64).sum::<u64>());
    }

    #[tokio::test]
    async fn a_woken_wait_that_is_dropped_passes_the_wake_up_on() {
        let (tx, rx) = ready_queue::<u32>(2);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // Worker 0 parks, then worker 1 parks (so a send wakes worker 1 first).
        let mut first = Box::pin(rx.recv(0));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        let mut second = Box::pin(rx.recv(1));
        assert!(second.as_mut().poll(&mut cx).is_pending());
        tx.send(7);
        // Worker 1 was woken but goes away without taking the item: worker 0
        // must be woken instead and find it.
        drop(second);
        let state = rx.0.state.lock();
        assert!(state.wakers[0].is_none(), "worker 0 was not woken");
        drop(state);
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
    }
}
