//! Core NATS notifications: idle workers hear about new work, result
//! waiters about finished tasks, instead of polling.
//!
//! Whatever makes tasks ready (enqueue, promotion, release, recovery,
//! requeue) publishes the queue on `<P>.wake.<queue>`, once per call and
//! queue; whatever brings tasks to a final state (finish, cancel, lease
//! recovery, a reserver dead-lettering) publishes their ids, comma
//! separated, once per call, on `<P>.finished`. Plain core publishes, not
//! JetStream: they cost nothing when nobody listens and store nothing.
//! (A watch of the ledger would also work, but would ship every record
//! change, payload included, to every listening process.)
//!
//! Each backend subscribes to both at connect, on its own connection, and
//! async-nats subscribes again after a reconnect. For workers a wake-up is
//! a hint: one lost during a disconnect leaves the waiter to its timeout
//! and its poll. Result waiters lose nothing: while the connection is down
//! [`Wakeups::finish_mark`] answers `None` (poll), and a reconnect posts
//! "something finished" so every waiter reads again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conveyor_core::{Error, FinishBoard, FinishMark, TaskId};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::nats_error;
use crate::names::Names;

/// Who waits for what.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    board: FinishBoard,
    up: AtomicBool,
    /// The connection was lost and is not back yet.
    lost: AtomicBool,
    /// Times it came back after being lost.
    reconnects: AtomicU64,
    /// The same state for calls that must end when the connection drops.
    pub(crate) link: crate::bounds::Link,
}

impl Wakeups {
    fn notify(&self, queue: &str) {
        if let Some(n) = self.queues.lock().ok().and_then(|q| q.get(queue).cloned()) {
            n.notify_waiters();
        }
    }

    fn notify_all(&self) {
        if let Ok(q) = self.queues.lock() {
            q.values().for_each(|n| n.notify_waiters());
        }
    }

    /// The connection is up (again): look again, anything may have happened.
    pub(crate) fn connected(&self) {
        if self.lost.swap(false, Ordering::AcqRel) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.up.store(true, Ordering::Release);
        self.link.set(true);
        self.notify_all();
        self.board.post_any();
    }

    /// The connection is down: result waiters poll until it is back.
    pub(crate) fn disconnected(&self) {
        self.lost.store(true, Ordering::Release);
        self.up.store(false, Ordering::Release);
        self.link.set(false);
        self.board.post_any();
    }

    /// Times the connection came back after being lost.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Waits until one of `queues` may have new work, or `timeout`.
    pub(crate) async fn wait(&self, queues: &[String], timeout: Duration) {
        let notifies: Vec<Arc<Notify>> = match self.queues.lock() {
            Ok(mut map) => queues
                .iter()
                .map(|q| map.entry(q.clone()).or_default().clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let waits: Vec<_> = notifies.iter().map(|n| Box::pin(n.notified())).collect();
        if waits.is_empty() {
            tokio::time::sleep(timeout).await;
            return;
        }
        let _ = tokio::time::timeout(timeout, futures_util::future::select_all(waits)).await;
    }

    /// Where finish posts stand; `None` while disconnected.
    pub(crate) fn finish_mark(&self) -> Option<FinishMark> {
        self.up.load(Ordering::Acquire).then(|| self.board.mark())
    }

    /// Waits until a finish posted after `since` may concern `id`, or `timeout`.
    pub(crate) async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.board.wait(id, since)).await;
    }
}

/// Subscribes to the namespace's wake and finished subjects (confirmed by
/// the server before this returns) and dispatches what arrives until the
/// backend is gone.
pub(crate) async fn listen(
    client: &async_nats::Client,
    names: &Names,
    wakeups: Weak<Wakeups>,
) -> Result<JoinHandle<()>, Error> {
    let state = || client.connection_state();
    let wake = client
        .subscribe(names.wake_all())
        .await
        .map_err(|e| nats_error("subscribing to wake-ups", e, state()))?;
    let finished = client
        .subscribe(names.finished_subject())
        .await
        .map_err(|e| nats_error("subscribing to finishes", e, state()))?;
    crate::bounds::within(
        "subscribing (flush)",
        crate::bounds::REQUEST_TIMEOUT,
        client.flush(),
    )
    .await?
    .map_err(|e| nats_error("subscribing (flush)", e, state()))?;
    if let Some(w) = wakeups.upgrade() {
        w.connected();
    }
    let names = names.clone();
    let finished_subject = names.finished_subject();
    Ok(tokio::spawn(async move {
        let mut both = futures_util::stream::select(wake, finished);
        while let Some(m) = both.next().await {
            let Some(w) = wakeups.upgrade() else { return };
            if m.subject.as_str() == finished_subject {
                w.board
                    .post_payload(std::str::from_utf8(&m.payload).unwrap_or(""));
            } else if let Some(q) = names.parse_wake(m.subject.as_str()) {
                w.notify(&q);
            }
        }
    }))
}
