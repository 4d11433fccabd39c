//! The pool's ready queue: tasks allowed to start, waiting for a worker.
//!
//! Many producers (the job fast path, the dispatcher) and every worker share
//! it, and a pool may have thousands of idle workers waiting on it at once.
//!
//! - **The tasks are in a lock-free queue** (`crossbeam-queue`'s `SegQueue`):
//!   a send and a take are a few atomic operations and never wait for each
//!   other. Under a lock, a thread descheduled while holding it (common when
//!   producers and workers outnumber the cores) stalls every other; measured,
//!   that made the no-op path swing between two speeds from run to run.
//! - **Waiting workers cost O(1) to park and to wake**, whatever their number:
//!   each has its own waker slot (by worker number), and idle workers are a
//!   stack of numbers, most recently idle on top (its cache is the warmest),
//!   under a mutex that only parking, waking and closing take. A send reads
//!   one counter of waiting workers and takes that mutex only when some wait.
//!   A channel that scans its list of waiters whenever one stops waiting (as
//!   `flume` does) spends half a million steps waking the first wave of a
//!   1,000-worker pool, and as many again tearing it down.
//!
//! No wake-up is lost: a sender pushes, then reads the waiting count; a
//! worker counts itself waiting, then looks at the queue once more (both
//! with sequentially consistent ordering), so at least one of them sees the
//! other. A send wakes at most one idle worker, outside the lock. A woken
//! worker that finds the queue empty (a busy worker took the task first)
//! parks again; one that is dropped after being woken passes the wake-up on,
//! so no task waits while a worker idles.
//!
//! The queue is unbounded: each job's capacity permits cap what its tasks hold
//! here, and the dispatcher hands over only what its limits allow. Dropping the
//! [`ReadySender`] closes it: waiting workers see the end once it is empty.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crossbeam_queue::SegQueue;
use parking_lot::Mutex;

use crate::engine::envelope::Padded;

/// The waiting workers.
struct Waiting {
    /// The waker of each waiting worker, by worker number.
    wakers: Vec<Option<Waker>>,
    /// Numbers of waiting workers, most recent last. May hold numbers whose
    /// waker is gone (a worker that stopped waiting): they are skipped.
    idle: Vec<usize>,
}

struct Shared<T> {
    items: SegQueue<T>,
    /// How many waker slots are set: read by every send, written by workers
    /// that park or stop waiting (always under `waiting`'s lock).
    parked: Padded<AtomicUsize>,
    closed: AtomicBool,
    waiting: Mutex<Waiting>,
}

impl<T> Shared<T> {
    /// Sets worker `me`'s waker (it waits).
    fn park(&self, w: &mut Waiting, me: usize, waker: &Waker) {
        match &mut w.wakers[me] {
            Some(old) if old.will_wake(waker) => {}
            Some(old) => *old = waker.clone(),
            slot @ None => {
                *slot = Some(waker.clone());
                w.idle.push(me);
                self.parked.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Clears worker `me`'s waker; false if it had none (a sender took it to
    /// wake the worker).
    fn unpark(&self, w: &mut Waiting, me: usize) -> bool {
        let had = w.wakers[me].take().is_some();
        if had {
            self.parked.fetch_sub(1, Ordering::SeqCst);
        }
        had
    }

    /// Takes the waker of the most recently idle worker, if any waits.
    fn pop_idle(&self, w: &mut Waiting) -> Option<Waker> {
        while let Some(me) = w.idle.pop() {
            if let Some(waker) = w.wakers[me].take() {
                self.parked.fetch_sub(1, Ordering::SeqCst);
                return Some(waker);
            }
        }
        None
    }

    /// Wakes one idle worker, if any waits.
    fn wake_one(&self) {
        let waker = self.pop_idle(&mut self.waiting.lock());
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// A queued task, or `Err(true)` if there is none and never will be.
    fn take(&self) -> Result<T, bool> {
        // Read before looking at the queue: every send happened before the
        // close, so a queue found empty after it stays empty.
        let closed = self.closed.load(Ordering::SeqCst);
        self.items.pop().ok_or(closed)
    }
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
        items: SegQueue::new(),
        parked: Padded(AtomicUsize::new(0)),
        closed: AtomicBool::new(false),
        waiting: Mutex::new(Waiting {
            wakers: (0..workers).map(|_| None).collect(),
            idle: Vec::with_capacity(workers),
        }),
    });
    (ReadySender(shared.clone()), ReadyReceiver(shared))
}

impl<T> ReadySender<T> {
    /// Queues a task and wakes one idle worker, if one waits.
    pub(crate) fn send(&self, item: T) {
        let shared = &*self.0;
        shared.items.push(item);
        // Pairs with the fence of a worker that parks: either it sees this
        // task, or this sees it waiting.
        fence(Ordering::SeqCst);
        if shared.parked.load(Ordering::SeqCst) > 0 {
            shared.wake_one();
        }
    }

    /// Tasks waiting for a worker.
    pub(crate) fn len(&self) -> usize {
        self.0.items.len()
    }
}

impl<T> Drop for ReadySender<T> {
    /// Closes the queue and wakes every waiting worker to see it.
    fn drop(&mut self) {
        let shared = &*self.0;
        shared.closed.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = {
            let mut w = shared.waiting.lock();
            w.idle.clear();
            let wakers: Vec<Waker> = w.wakers.iter_mut().filter_map(Option::take).collect();
            shared.parked.fetch_sub(wakers.len(), Ordering::SeqCst);
            wakers
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
        self.0
            .take()
            .map_err(|closed| if closed { Empty::ForGood } else { Empty::Now })
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

impl<T> Recv<'_, T> {
    /// The wait ends (with a task or the end): gives up its slot if it still
    /// has one; a wake-up it had received was for the task it takes.
    fn end(&mut self, got: Result<T, bool>) -> Poll<Option<T>> {
        if self.parked {
            self.parked = false;
            let shared = self.shared;
            let mut w = shared.waiting.lock();
            let had = shared.unpark(&mut w, self.me);
            if !had && got.is_err() {
                // Woken, but it takes no task (the end): pass the wake-up on.
                let waker = shared.pop_idle(&mut w);
                drop(w);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
        Poll::Ready(got.ok())
    }
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let me = self.me;
        match self.shared.take() {
            Ok(item) => return self.end(Ok(item)),
            Err(true) => return self.end(Err(true)),
            Err(false) => {}
        }
        {
            let shared = self.shared;
            let mut w = shared.waiting.lock();
            shared.park(&mut w, me, cx.waker());
        }
        self.parked = true;
        // Pairs with the fence of a send: either it sees this worker waiting,
        // or this sees its task.
        fence(Ordering::SeqCst);
        match self.shared.take() {
            Ok(item) => self.end(Ok(item)),
            Err(true) => self.end(Err(true)),
            Err(false) => Poll::Pending,
        }
    }
}

impl<T> Drop for Recv<'_, T> {
    /// A wait dropped before it got its task gives up its slot; if it had been
    /// woken already, the wake-up goes to another idle worker.
    fn drop(&mut self) {
        if !self.parked {
            return;
        }
        let shared = self.shared;
        let waker = {
            let mut w = shared.waiting.lock();
            if shared.unpark(&mut w, self.me) || shared.items.is_empty() {
                None
            } else {
                shared.pop_idle(&mut w)
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

    /// Senders on other threads race workers that keep parking and waking:
    /// every item reaches exactly one worker, while the queue is still open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_from_racing_senders_each_reach_exactly_one_worker() {
        let workers = 8;
        let (tx, rx) = ready_queue::<u64>(workers);
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut handles = Vec::new();
        for me in 0..workers {
            let (rx, taken) = (rx.clone(), taken.clone());
            handles.push(tokio::spawn(async move {
                let mut sum = 0;
                loop {
                    // As the engine's workers do: take what is there, wait
                    // only when nothing is.
                    let n = match rx.try_recv() {
                        Ok(n) => n,
                        Err(Empty::ForGood) => break,
                        Err(Empty::Now) => match rx.recv(me).await {
                            Some(n) => n,
                            None => break,
                        },
                    };
                    sum += n;
                    taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                sum
            }));
        }
        let tx = Arc::new(tx);
        let senders: Vec<_> = (0..4u64)
            .map(|s| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        tx.send(s * 20_000 + i + 1);
                        if i % 64 == 0 {
                            // Gaps, so workers run dry and park in between.
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().expect("sender");
        }
        // Every item must be taken while the queue is still open: a lost
        // wake-up leaves one in the queue with every worker parked.
        let all = tokio::time::timeout(Duration::from_secs(20), async {
            while taken.load(std::sync::atomic::Ordering::SeqCst) < 80_000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(
            all.is_ok(),
            "items left with workers parked: {} taken",
            taken.load(std::sync::atomic::Ordering::SeqCst)
        );
        drop(tx);
        let mut total = 0;
        for h in handles {
            total += h.await.expect("worker");
        }
        assert_eq!(total, (1..=80_000u64).sum::<u64>());
    }

    /// One worker, one item at a time: each send lands while the worker is
    /// on its way to park, over and over; an item sent just as it looked at
    /// the empty queue and before it counted itself waiting must still reach
    /// it (a lost wake-up stalls a round until the timeout).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_item_sent_while_the_worker_parks_reaches_it() {
        use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
        const ROUNDS: u64 = 30_000;
        let (tx, rx) = ready_queue::<u64>(1);
        let taken = Arc::new(AtomicU64::new(0));
        let t = taken.clone();
        let worker = tokio::spawn(async move {
            loop {
                let n = match rx.try_recv() {
                    Ok(n) => n,
                    Err(Empty::ForGood) => break,
                    Err(Empty::Now) => match rx.recv(0).await {
                        Some(n) => n,
                        None => break,
                    },
                };
                t.store(n, SeqCst);
            }
        });
        let stalled = std::thread::spawn(move || {
            for i in 1..=ROUNDS {
                tx.send(i);
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while taken.load(SeqCst) < i {
                    if std::time::Instant::now() > deadline {
                        return Some(i);
                    }
                    std::hint::spin_loop();
                }
            }
            None
        })
        .join()
        .expect("sender");
        assert_eq!(stalled, None, "an item was never taken: a wake-up was lost");
        worker.await.expect("worker");
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
        let w = rx.0.waiting.lock();
        assert!(w.wakers[0].is_none(), "worker 0 was not woken");
        drop(w);
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
    }
}
