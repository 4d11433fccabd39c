//! Pub/sub notifications: idle workers hear about new work, result waiters
//! about finished tasks, instead of only polling.
//!
//! Scripts that make tasks available (enqueue, release, lease recovery,
//! requeue) `PUBLISH` the queue's name on the namespace's wake channel
//! (`P wake`); scripts that bring tasks to a final state (finish, cancel,
//! lease recovery) publish their ids, once per call, on its finished channel
//! (`P finished`). The first [`Wakeups::wait`] or [`Wakeups::finish_mark`]
//! call starts one subscriber task per backend, on its own connection (to
//! the primary of the moment: see [`Primary::client`]): it
//! tells the backend's [`WakeBoard`] which queue may have work and which
//! tasks finished, and when its subscription is up or lost (what waiters are
//! promised then is the board's). It subscribes to a channel only once
//! something waits on it: a worker to the wake channel, a program awaiting
//! results to the finished one, so a producer that also awaits results does
//! not hear a message per task it enqueues, nor a worker one per finish.
//! A channel wanted later is added on the same connection, and everyone
//! looks again once it is confirmed, as after a reconnection. Publishing
//! costs nothing when nobody listens and stores nothing, so memory stays
//! bounded. After a failure the subscriber reconnects with a backoff, until
//! the backend is gone.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conveyor_core::{FinishMark, TaskId, WakeBoard};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::primary::Primary;

/// The wake channel's bit in [`Wanted`].
const WAKE: u8 = 1;
/// The finished channel's bit in [`Wanted`].
const FINISHED: u8 = 2;

/// The channels the subscriber listens on.
#[derive(Debug, Clone)]
struct Channels {
    /// Queue names of new work.
    wake: String,
    /// Ids of finished tasks.
    finished: String,
}

impl Channels {
    /// The channels of the bits in `set`.
    fn named(&self, set: u8) -> Vec<&str> {
        let mut out = Vec::with_capacity(2);
        if set & WAKE != 0 {
            out.push(self.wake.as_str());
        }
        if set & FINISHED != 0 {
            out.push(self.finished.as_str());
        }
        out
    }
}

/// The channels something has waited on, and a nudge when that grows.
#[derive(Debug, Default)]
struct Wanted {
    channels: AtomicU8,
    grew: Notify,
}

/// The notification side of one backend: a lazily started subscriber.
#[derive(Debug)]
pub(crate) struct Wakeups {
    conn: Primary,
    channels: Channels,
    waiters: Arc<WakeBoard>,
    wanted: Arc<Wanted>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Wakeups {
    /// Notifications of the namespace whose channels are `wake` (new work)
    /// and `finished` (finished tasks).
    pub(crate) fn new(conn: Primary, wake: String, finished: String) -> Self {
        Self {
            conn,
            channels: Channels { wake, finished },
            waiters: Arc::default(),
            wanted: Arc::default(),
            task: Mutex::new(None),
        }
    }

    /// Makes sure the subscriber runs and listens on `channel` (a bit).
    fn ensure_started(&self, channel: u8) {
        let before = self.wanted.channels.fetch_or(channel, Ordering::AcqRel);
        if before & channel != 0 {
            return;
        }
        let Ok(mut task) = self.task.lock() else {
            return;
        };
        match task.as_ref() {
            Some(_) => self.wanted.grew.notify_one(),
            None => {
                *task = Some(tokio::spawn(listen(
                    self.conn.clone(),
                    self.channels.clone(),
                    Arc::downgrade(&self.waiters),
                    self.wanted.clone(),
                )))
            }
        }
    }

    /// Times the subscription connected again after losing its connection.
    pub(crate) fn reconnects(&self) -> u64 {
        self.waiters.reconnects()
    }

    /// Waits until one of `queues` may have new work, or `timeout`.
    pub(crate) async fn wait(&self, queues: &[String], timeout: Duration) {
        self.ensure_started(WAKE);
        self.waiters.wait(queues, timeout).await;
    }

    /// Starts the subscriber if not yet, and returns where finish posts
    /// stand; `None` while the subscription is down after a failure (wait by
    /// polling).
    pub(crate) fn finish_mark(&self) -> Option<FinishMark> {
        self.ensure_started(FINISHED);
        self.waiters.finish_mark()
    }

    /// Waits until a finish posted after `since` may concern task `id`, at
    /// most `timeout`.
    pub(crate) async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) {
        self.ensure_started(FINISHED);
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

/// Subscribes to the wanted channels and wakes waiters, adding a channel
/// when one is wanted later, reconnecting with backoff until the backend is
/// gone.
async fn listen(conn: Primary, channels: Channels, waiters: Weak<WakeBoard>, wanted: Arc<Wanted>) {
    let channel = &channels.wake;
    let mut backoff = MIN_BACKOFF;
    loop {
        match conn.client().get_async_pubsub().await {
            Ok(pubsub) => {
                let (mut sink, mut messages) = pubsub.split();
                let mut have = 0u8;
                // Subscribed when every wanted channel is; a channel wanted
                // meanwhile is added before waiters are told to look again.
                loop {
                    let want = wanted.channels.load(Ordering::Acquire);
                    if want & !have != 0 {
                        // One channel per call, so each subscription is
                        // confirmed before waiters are told to look again.
                        let mut failed = None;
                        for name in channels.named(want & !have) {
                            if let Err(e) = sink.subscribe(name).await {
                                failed = Some(e);
                                break;
                            }
                        }
                        if let Some(e) = failed {
                            tracing::warn!(%channel, error = %e, "subscribing to wake-ups failed");
                            break;
                        }
                        have = want;
                        backoff = MIN_BACKOFF;
                        tracing::debug!(%channel, channels = have, "subscribed to wake-ups");
                        match waiters.upgrade() {
                            Some(w) => w.connected(),
                            None => return,
                        }
                        continue;
                    }
                    tokio::select! {
                        msg = messages.next() => {
                            let Some(msg) = msg else {
                                break;
                            };
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
                        () = wanted.grew.notified() => {}
                    }
                }
                if have != 0 {
                    tracing::warn!(%channel, "wake-up subscription lost; reconnecting");
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
