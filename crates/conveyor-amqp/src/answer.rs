//! Every wait on the broker is bounded.
//!
//! A broker that dies with its host, or a network that black-holes traffic,
//! resets nothing: a request sent then is never answered, and the client
//! would learn of it only from the AMQP heartbeat (a minute or more with the
//! server's defaults). So each request the backend makes — a declaration, a
//! consume, a flush, a publish and its confirm, an ack, a commit — gets
//! [`ANSWER_WITHIN`] to be answered. One that is not fails with a transient
//! `Timeout` error, and the connection it was sent on counts as dead from
//! then on ([`Health::broken`]): its channels (and their deliveries' claims)
//! are void, and the next operation opens a new connection and new
//! consumers. The broker returns what the dead connection held to its
//! queues when it sees the connection go (at once when the network is back,
//! else at its own heartbeat timeout).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conveyor_core::{BackendErrorKind, Error};

use crate::error::amqp_error;

/// How long the broker has to answer one request.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Whether a connection still counts as alive, shared by the connection and
/// every consumer channel on it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    broken: AtomicBool,
}

impl Health {
    /// The connection stopped answering: everything on it is void.
    pub(crate) fn set_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// True once a request on the connection went unanswered.
    pub(crate) fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

/// The error of a request not answered in time.
pub(crate) fn no_answer(what: &str) -> Error {
    Error::backend(
        BackendErrorKind::Timeout,
        format!(
            "amqp {what}: no answer from the broker within {ANSWER_WITHIN:?} \
             (is it down, or the network to it?); reconnecting"
        ),
    )
}

/// Waits for `request` at most [`ANSWER_WITHIN`]: its error mapped as
/// `what`, or a `Timeout` that marks the connection broken.
pub(crate) async fn answer<T>(
    health: &Health,
    what: &str,
    request: impl Future<Output = lapin::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(ANSWER_WITHIN, request).await {
        Ok(r) => r.map_err(|e| amqp_error(what, e)),
        Err(_) => {
            health.set_broken();
            Err(no_answer(what))
        }
    }
}

/// Like [`answer`] for a step that maps its own errors.
pub(crate) async fn within<T>(
    health: &Health,
    what: &str,
    step: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(ANSWER_WITHIN, step).await {
        Ok(r) => r,
        Err(_) => {
            health.set_broken();
            Err(no_answer(what))
        }
    }
}
