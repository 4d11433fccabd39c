//! Pub/sub notifications: idle workers hear about new work, result waiters
//! about finished tasks, instead of only polling.
//!
//! Scripts that make tasks available (enqueue, release, lease recovery,
//! requeue) `PUBLISH` the queue's name on the namespace's wake channel
//! (`P wake`); scripts that bring tasks to a final state (finish, cancel,
//! lease recovery) publish their ids, once per call, on its finished channel
//! (`P finished`). The first [`Wakeups::wait`] or [`Wakeups::finish_mark`]
//! call starts one subscriber task per backend, on its own connection,
//! subscribed to both: it tells the backend's [`WakeBoard`] which queue may
//! have work and which tasks finished, and when its subscription is up or
//! lost (what waiters are promised then is the board's). Publishing costs
//! nothing when nobody listens and stores nothing, so memory stays bounded.
//! After a failure the subscriber reconnects with a backoff, until the
//! backend is gone.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conveyor_core::{FinishMark, TaskId, WakeBoard};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

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
    waiters: Arc<WakeBoard>,
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
        self.waiters.reconnects()
    }

    /// Waits until one of `queues` may have new work, or `timeout`.
    pub(crate) async fn wait(&self, queues: &[String], timeout: Duration) {
        self.ensure_started();
        self.waiters.wait(queues, timeout).await;
    }

    /// Starts the subscriber if not yet, and returns where finish posts
    /// stand; `None` while the subscription is down after a failure (wait by
    /// polling).
    pub(crate) fn finish_mark(&self) -> Option<FinishMark> {
        self.ensure_started();
        self.waiters.finish_mark()
    }

    /// Waits until a finish posted after `since` may concern task `id`, at
    /// most `timeout`.
    pub(crate) async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) {
        self.ensure_started();
        self.waiters.wait_finished(id, since, timeout).await;
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
async fn listen(client: redis::Client, channels: Channels, waiters: Weak<WakeBoard>) {
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
                            Some(w) => w.connected(),
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
                                w.finish_board().post_payload(payload.unwrap_or(""));
                            } else if let Ok(queue) = std::str::from_utf8(msg.get_payload_bytes()) {
                                w.notify(queue);
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
            Some(w) => w.disconnected(),
            None => return,
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
