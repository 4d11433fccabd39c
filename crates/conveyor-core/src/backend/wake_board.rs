//! Who waits for what, for a backend whose notifications arrive on a
//! listener of its own (Redis `SUBSCRIBE`, NATS core subscriptions): the
//! in-process half of [`Backend::wait_for_work`](super::Backend::wait_for_work)
//! and of a push-based [`ResultStore::wait_finished`](super::ResultStore::wait_finished).
//!
//! The listener is the store's own; it feeds the board: that it is
//! subscribed ([`WakeBoard::connected`]) or lost its subscription
//! ([`WakeBoard::disconnected`]), that a queue may have new work
//! ([`WakeBoard::notify`]), that tasks finished
//! ([`WakeBoard::finish_board`]). Workers wait per queue; result waiters
//! wait on the [`FinishBoard`].
//!
//! For workers a wake-up is a hint: one published while the listener is
//! away is lost and the waiter returns at its timeout, so the caller's
//! polling still finds the work. Result waiters lose nothing: every
//! (re)connection wakes every waiter once and posts "something finished",
//! which covers whatever was published before the subscription took effect
//! (a waiter's mark predates it); while the listener is down after a
//! connection, [`WakeBoard::finish_mark`] answers `None` and result waiters
//! poll.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;

use super::finish_board::{FinishBoard, FinishMark};
use crate::task::TaskId;

/// The listener's state, as [`WakeBoard::finish_mark`] needs it.
mod health {
    /// Not connected yet (the first connection is under way).
    pub(super) const STARTING: u8 = 0;
    /// Subscribed.
    pub(super) const UP: u8 = 1;
    /// The connection failed or the subscription was lost; reconnecting.
    pub(super) const DOWN: u8 = 2;
}

/// Idle workers per queue, result waiters, and the listener's state.
#[derive(Debug)]
pub struct WakeBoard {
    /// Workers, per queue.
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    /// Result waiters.
    finished: FinishBoard,
    health: AtomicU8,
    /// The connection was lost after it had been up, and is not back yet.
    lost: AtomicBool,
    /// Times it came back after being lost.
    reconnects: AtomicU64,
}

impl Default for WakeBoard {
    fn default() -> Self {
        Self {
            queues: Mutex::default(),
            finished: FinishBoard::new(),
            health: AtomicU8::new(health::STARTING),
            lost: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
        }
    }
}

impl WakeBoard {
    /// A board with no waiters, its listener not connected yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue `queue` may have new work: wakes its waiting workers.
    pub fn notify(&self, queue: &str) {
        if let Ok(queues) = self.queues.lock() {
            if let Some(n) = queues.get(queue) {
                n.notify_waiters();
            }
        }
    }

    fn notify_all(&self) {
        if let Ok(queues) = self.queues.lock() {
            queues.values().for_each(|n| n.notify_waiters());
        }
    }

    /// Where the listener posts the ids of finished tasks.
    pub fn finish_board(&self) -> &FinishBoard {
        &self.finished
    }

    /// The listener is subscribed (again): everyone looks again, since
    /// anything published before was not heard.
    pub fn connected(&self) {
        if self.lost.swap(false, Ordering::AcqRel) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.health.store(health::UP, Ordering::Release);
        self.notify_all();
        self.finished.post_any();
    }

    /// The listener's connection failed or dropped: result waiters read
    /// again (and, asking for a mark, poll until it is back).
    pub fn disconnected(&self) {
        if self.health.swap(health::DOWN, Ordering::AcqRel) == health::UP {
            self.lost.store(true, Ordering::Release);
        }
        self.finished.post_any();
    }

    /// Times the listener connected again after losing its connection (a
    /// first connection that took several attempts counts none).
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Waits until one of `queues` may have new work, or `timeout`.
    pub async fn wait(&self, queues: &[String], timeout: Duration) {
        let notifies: Vec<Arc<Notify>> = match self.queues.lock() {
            Ok(mut map) => queues
                .iter()
                .map(|q| map.entry(q.clone()).or_default().clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut waits: Vec<_> = notifies.iter().map(|n| Box::pin(n.notified())).collect();
        if waits.is_empty() {
            tokio::time::sleep(timeout).await;
            return;
        }
        let any = std::future::poll_fn(|cx| {
            if waits.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let _ = tokio::time::timeout(timeout, any).await;
    }

    /// Where finish posts stand; `None` while the listener is down after a
    /// failure (wait by polling).
    pub fn finish_mark(&self) -> Option<FinishMark> {
        match self.health.load(Ordering::Acquire) {
            health::DOWN => None,
            _ => Some(self.finished.mark()),
        }
    }

    /// Waits until a finish posted after `since` may concern task `id`, at
    /// most `timeout`.
    pub async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.finished.wait(id, since)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_count_returns_after_a_loss() {
        let b = WakeBoard::new();
        assert!(b.finish_mark().is_some(), "starting: marks are given");
        // A first connection that took several attempts is no reconnect.
        b.disconnected();
        b.disconnected();
        assert!(b.finish_mark().is_none());
        b.connected();
        b.connected();
        assert_eq!(b.reconnects(), 0);
        assert!(b.finish_mark().is_some());
        b.disconnected();
        b.disconnected();
        assert!(b.finish_mark().is_none());
        b.connected();
        assert_eq!(b.reconnects(), 1);
        b.connected();
        assert_eq!(b.reconnects(), 1);
    }

    #[tokio::test]
    async fn a_notified_queue_wakes_its_waiters() {
        let b = Arc::new(WakeBoard::new());
        let queues = vec!["a".to_string(), "b".to_string()];
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                b.wait(&queues, Duration::from_secs(30)).await;
                start.elapsed()
            })
        };
        // Let the waiter register before notifying.
        while b.queues.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.notify("c");
        b.notify("b");
        let took = waiter.await.unwrap();
        assert!(took < Duration::from_secs(30), "woken, took {took:?}");
    }

    #[tokio::test]
    async fn a_connection_posts_any_finish() {
        let b = WakeBoard::new();
        let mark = b.finish_mark().unwrap();
        b.connected();
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            b.wait_finished(TaskId(7), mark, Duration::from_secs(30)),
        )
        .await;
        assert!(waited.is_ok(), "a post after the mark wakes the waiter");
    }
}
