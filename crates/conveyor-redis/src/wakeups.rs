//! Wake-ups: idle workers hear about new work instead of only polling.
//!
//! Scripts that make tasks available (enqueue, release, lease recovery,
//! requeue) `PUBLISH` the queue's name on the namespace's wake channel. The
//! first [`Backend::wait_for_work`](conveyor_core::Backend::wait_for_work) call
//! starts one subscriber task per backend, on its own connection, which wakes
//! the waiters of that queue. Publishing costs nothing when nobody listens and
//! stores nothing, so memory stays bounded. A wake-up is a hint: a message
//! published while the subscriber is reconnecting is lost and the waiter
//! returns at its timeout, so the caller's polling still finds the work. After
//! a (re)subscription every waiter is woken once, since work may have arrived
//! meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Waiters per queue, shared with the subscriber task.
#[derive(Debug, Default)]
struct Waiters {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
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
}

/// The wake-up side of one backend: a lazily started subscriber.
#[derive(Debug)]
pub(crate) struct Wakeups {
    client: redis::Client,
    channel: String,
    waiters: Arc<Waiters>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Wakeups {
    pub(crate) fn new(client: redis::Client, channel: String) -> Self {
        Self {
            client,
            channel,
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
                self.channel.clone(),
                Arc::downgrade(&self.waiters),
            )));
        }
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

/// Subscribes to the wake channel and wakes waiters, reconnecting with backoff
/// until the backend is gone.
async fn listen(client: redis::Client, channel: String, waiters: Weak<Waiters>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = MIN_BACKOFF;
                    tracing::debug!(%channel, "subscribed to wake-ups");
                    match waiters.upgrade() {
                        Some(w) => w.notify_all(),
                        None => return,
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        match waiters.upgrade() {
                            Some(w) => w.notify(msg.get_payload_bytes()),
                            None => return,
                        }
                    }
                    tracing::warn!(%channel, "wake-up subscription lost; reconnecting");
                }
                Err(e) => tracing::warn!(%channel, error = %e, "subscribing to wake-ups failed"),
            },
            Err(e) => tracing::debug!(%channel, error = %e, "wake-up connection failed"),
        }
        if waiters.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
