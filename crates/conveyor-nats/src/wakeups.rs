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
//! async-nats subscribes again after a reconnect. What arrives, and the
//! connection's ups and downs, go to the backend's [`WakeBoard`], which
//! says what waiters are promised: a wake-up is a hint for workers, and
//! result waiters lose nothing.

use std::sync::Weak;

use conveyor_core::{Error, WakeBoard};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::error::nats_error;
use crate::names::Names;

/// Who waits for what, and the connection's state for the calls bound to it.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    /// Workers and result waiters, and whether the subscriptions are up.
    pub(crate) board: WakeBoard,
    /// The same state for calls that must end when the connection drops.
    pub(crate) link: crate::bounds::Link,
}

impl Wakeups {
    /// The connection is up (again): look again, anything may have happened.
    pub(crate) fn connected(&self) {
        self.link.set(true);
        self.board.connected();
    }

    /// The connection is down: result waiters poll until it is back.
    pub(crate) fn disconnected(&self) {
        self.link.set(false);
        self.board.disconnected();
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
                    .finish_board()
                    .post_payload(std::str::from_utf8(&m.payload).unwrap_or(""));
            } else if let Some(q) = names.parse_wake(m.subject.as_str()) {
                w.board.notify(&q);
            }
        }
    }))
}
