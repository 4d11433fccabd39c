//! Pub/sub notifications: idle workers hear about new work, result waiters
//! about finished tasks, instead of only polling.
//!
//! Scripts that make tasks available (enqueue, release, lease recovery,
//! requeue) `PUBLISH` the queue's name on the namespace's wake channel
//! (`P wake`); scripts that bring tasks to a final state (finish, cancel,
//! lease recovery) publish their ids, once per call, on its finished channel
//! (`P finished`). The first [`Wakeups::wait`] or [`Wakeups::finish_mark`]
//! call starts one subscriber task per backend, on its own connection,
//! subscribed to both: it wakes the waiters of a queue, and posts finished ids
//! on the backend's [`FinishBoard`]. Publishing costs nothing when nobody
//! listens and stores nothing, so memory stays bounded.
//!
//! For workers a wake-up is a hint: a message published while the subscriber
//! is reconnecting is lost and the waiter returns at its timeout, so the
//! caller's polling still finds the work. Result waiters lose nothing: after
//! a (re)subscription every waiter is woken once and "something finished" is
//! posted, which covers whatever was published before the subscription took
//! effect (a waiter's mark predates it); while the subscription is down after
//! a failure, [`Wakeups::finish_mark`] answers `None` and result waiters poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conveyor_core::{FinishBoard, FinishMark, TaskId};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The subscription's state, as [`Wakeups::finish_mark`] needs it.
mod health {
    /// Not subscribed yet (the first subscription is under way).
    pub(super) const STARTING: u8 = 0;
    /// Subscribed to both channels.
    pub(super) const SUBSCRIBED: u8 = 1;
    /// The connection failed or the subscription was lost; reconnecting.
    pub(super) const DOWN: u8 = 2;
}

/// Who waits for what, shared with the subscriber task.
#[derive(Debug)]
struct Waiters {
    /// Workers, per queue.
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    /// Result waiters.
    finished: FinishBoard,
    health: AtomicU8,
    /// Subscriptions made; every one after the first follows a lost connection.
    subscriptions: AtomicU64,
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            queues: Mutex::default(),
            finished: FinishBoard::new(),
            health: AtomicU8::new(health::STARTING),
            subscriptions: AtomicU64::new(0),
        }
    }
}

impl Waiters {
    fn notify(&self, queue: &[u8]) {
        let Ok(queues) = self.queues.lock() else {
            return;
        };
        if let Some(n) = std::str::from_utf8(queue).ok().and_then(|q| queues.get(q)) {
            n.notify_waiters();
        }
    }

    fn notify_all(&self) {
        if let Ok(queues) = self.queues.lock() {
            queues.values().for_each(|n| n.notify_waiters());
        }
    }

    fn of(&self, queues: &[String]) -> Vec<Arc<Notify>> {
        let Ok(mut map) = self.queues.lock() else {
            return Vec::new();
        };
        queues
            .iter()
            .map(|q| map.entry(q.clone()).or_default().clone())
            .collect()
    }

    /// Subscribed: everyone looks again, since anything published before
    /// was not heard.
    fn subscribed(&self) {
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        self.health.store(health::SUBSCRIBED, Ordering::Release);
        self.notify_all();
        self.finished.post_any();
    }

    /// Down: result waiters read again (and, asking for a mark, poll until
    /// the subscription is back).
    fn down(&self) {
        self.health.store(health::DOWN, Ordering::Release);
        self.finished.post_any();
    }
}

/// The channels the subscriber listens on.
#[derive(Debug, Clone)]
struct Channels {
    /// Queue names of new work.
    wake: String,
    /// Ids of finished tasks.
    finished: String,
}

/// The notification side of one backend: a lazily started subscriber.
#[derive(Debug)]
pub(crate) struct Wakeups {
    client: redis::Client,
    channels: Channels,
    waiters: Arc<Waiters>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Wakeups {
    /// Notifications of the namespace whose channels are `wake` (new work)
    /// and `finished` (finished tasks).
    pub(crate) fn new(client: redis::Client, wake: String, finished: String) -> Self {
        Self {
            client,
            channels: Channels { wake, finished },
            waiters: Arc::default(),
            task: Mutex::new(None),
        }
    }

    fn ensure_started(&self) {
        let Ok(mut task) = self.task.lock() else {
            return;
        };
        if task.is_none() {
            *task = Some(tokio::spawn(listen(
                self.client.clone(),
                self.channels.clone(),
                Arc::downgrade(&self.waiters),
            )));
        }
    }

    /// Times the subscription connected again after losing its connection.
    pub(crate) fn reconnects(&self) -> u64 {
        self.waiters
            .subscriptions
            .load(Ordering::Relaxed)
            .saturating_sub(1)
    }

    /// Waits until one of `queues` may have new work, or `timeout`.
    pub(crate) async fn wait(&self, queues: &[String], timeout: Duration) {
        self.ensure_started();
        let notifies = self.waiters.of(queues);
        let waits: Vec<_> = notifies.iter().map(|n| Box::pin(n.notified())).collect();
        if waits.is_empty() {
            tokio::time::sleep(timeout).await;
            return;
        }
        let _ = tokio::time::timeout(timeout, futures_util::future::select_all(waits)).await;
    }

    /// Starts the subscriber if not yet, and returns where finish posts
    /// stand; `None` while the subscription is down after a failure (wait by
    /// polling).
    pub(crate) fn finish_mark(&self) -> Option<FinishMark> {
        self.ensure_started();
        match self.waiters.health.load(Ordering::Acquire) {
            health::DOWN => None,
            _ => Some(self.waiters.finished.mark()),
        }
    }

    /// Waits until a finish posted after `since` may concern task `id`, at
    /// most `timeout`.
    pub(crate) async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) {
        self.ensure_started();
        let _ = tokio::time::timeout(timeout, self.waiters.finished.wait(id, since)).await;
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock() {
            if let Some(t) = task.take() {
                t.abort();
            }
        }
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Subscribes to both channels and wakes waiters, reconnecting with backoff
/// until the backend is gone.
async fn listen(client: redis::Client, channels: Channels, waiters: Weak<Waiters>) {
    let channel = &channels.wake;
    let mut backoff = MIN_BACKOFF;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                // One channel per call, so each subscription is confirmed
                // before waiters are told to look again.
                let subscribed = match pubsub.subscribe(&channels.wake).await {
                    Ok(()) => pubsub.subscribe(&channels.finished).await,
                    Err(e) => Err(e),
                };
                match subscribed {
                    Ok(()) => {
                        backoff = MIN_BACKOFF;
                        tracing::debug!(%channel, "subscribed to wake-ups");
                        match waiters.upgrade() {
                            Some(w) => w.subscribed(),
                            None => return,
                        }
                        let mut messages = pubsub.into_on_message();
                        while let Some(msg) = messages.next().await {
                            let Some(w) = waiters.upgrade() else {
                                return;
                            };
                            if msg.get_channel_name() == channels.finished {
                                let payload = std::str::from_utf8(msg.get_payload_bytes());
                                // Ids are ASCII; anything else: ids unknown.
                                w.finished.post_payload(payload.unwrap_or(""));
                            } else {
                                w.notify(msg.get_payload_bytes());
                            }
                        }
                        tracing::warn!(%channel, "wake-up subscription lost; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "subscribing to wake-ups failed")
                    }
                }
            }
            Err(e) => tracing::debug!(%channel, error = %e, "wake-up connection failed"),
        }
        match waiters.upgrade() {
            Some(w) => w.down(),
            None => return,
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
