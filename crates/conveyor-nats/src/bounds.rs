//! Every wait on the server has a bound, so neither an outage nor a
//! server that stopped answering can wedge a caller (a worker's fetch, its
//! settlements, its stop).
//!
//! Three layers, from the inside out:
//!
//! - **each request** (a key-value read or compare-and-set, a stream info,
//!   a direct get, a publish's ack) waits at most [`REQUEST_TIMEOUT`]: the
//!   client's request timeout and the JetStream context's timeout, set at
//!   connect. A core publish or flush (an ack, a wake-up) is bounded the
//!   same way here, since async-nats waits for room in its command queue,
//!   which fills while the connection is down. A pull fetch is answered by
//!   the server at once (`no_wait`: what is there, or "no messages"), so it
//!   is never left waiting on the server; the client waits at most
//!   [`FETCH_LIMIT`] for that answer (see `streams.rs`), so a fetch the
//!   server lost in a restart is never waited for;
//! - **the connection** ([`Link`]): a call on the worker's path (reserve,
//!   renew, finish, the maintenance and registry calls) that starts while
//!   the connection is down waits for it at most [`RECONNECT_WAIT`], and
//!   one in flight when the connection drops ends at once, both with a
//!   transient [`BackendErrorKind::Unavailable`]: its replies cannot come
//!   (async-nats does not carry a request over a reconnect), so waiting for
//!   its timeouts would only hold the worker;
//! - **the whole call** on the worker's path is given up after
//!   [`CALL_LIMIT`] with a transient [`BackendErrorKind::Timeout`], a
//!   backstop for a server that accepts the connection but answers nothing.
//!   And when one call on the worker's path times out, every other one in
//!   flight ends too, with the same transient error: a server that let one
//!   request go unanswered for [`REQUEST_TIMEOUT`] is taken as silent (a
//!   stopped process, a black-holed network; the connection looks up until
//!   pings fail, a minute later), so the others would only wait out their
//!   own timeouts one after the other. Calls begun afterwards are tried as
//!   usual.
//!
//! Why these lengths: a worker's stop waits for its fetch in flight and
//! then for its settlement call in flight, one after the other, and a
//! settlement retried just before the stop gave up on it is one more call;
//! so two of these bounds must fit in the 2 s a worker has beyond its grace
//! to exit. A request takes milliseconds on a healthy server, even a
//! loaded one; one that takes a second is treated as an outage.
//!
//! Why no `expires` on a fetch: a 2.9 server holds a `no_wait` fetch that
//! has an expiry until it expires whenever the consumer has unacked
//! messages (measured: a reserve beside 5 running tasks took 1.0 s with a
//! 1 s expiry, 1.7 ms without), which would stall every reserve while tasks
//! run. Without one the server answers at once, and the client's own bound
//! covers an answer that never comes.
//!
//! A call given up half-way leaves the store as a crash at that point
//! would: every step is safe to be interrupted (see `docs/nats.md`, "Publish
//! first, write second"), and the worker tries again.

use std::future::Future;
use std::time::Duration;

use conveyor_core::{BackendErrorKind, Error};
use tokio::sync::watch;

/// The longest wait for one request's answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest wait for a pull fetch's messages and its end.
pub(crate) const FETCH_LIMIT: Duration = Duration::from_secs(1);

/// How long a call begun while the connection is down waits for it.
pub(crate) const RECONNECT_WAIT: Duration = Duration::from_millis(250);

/// The longest a call on the worker's path may take in all.
pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(10);

/// Whether the connection is up, as the client's events tell it, and
/// how many calls timed out.
#[derive(Debug)]
pub(crate) struct Link {
    up: watch::Sender<bool>,
    timeouts: watch::Sender<u64>,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            up: watch::Sender::new(true),
            timeouts: watch::Sender::new(0),
        }
    }
}

impl Link {
    /// The connection is up (`true`) or lost (`false`).
    pub(crate) fn set(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// Runs `call` (doing `what`) within the bounds of the worker's path:
    /// waits [`RECONNECT_WAIT`] at most for a connection that is down,
    /// ends at once when the connection drops mid-call or another call
    /// times out, and gives up after [`CALL_LIMIT`] in all. Each ending is
    /// a transient error; a timeout of its own ends the others in flight.
    pub(crate) async fn guard<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut timeouts = self.timeouts.subscribe();
        timeouts.borrow_and_update();
        let r = self.guard_inner(what, call, &mut timeouts).await;
        if matches!(&r, Err(e) if e.backend_kind() == Some(BackendErrorKind::Timeout)) {
            self.timeouts.send_modify(|n| *n += 1);
        }
        r
    }

    async fn guard_inner<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, Error>>,
        timeouts: &mut watch::Receiver<u64>,
    ) -> Result<T, Error> {
        let mut rx = self.up.subscribe();
        if !*rx.borrow_and_update() {
            let back = tokio::time::timeout(RECONNECT_WAIT, rx.wait_for(|up| *up)).await;
            if !matches!(back, Ok(Ok(_))) {
                return Err(Error::backend(
                    BackendErrorKind::Unavailable,
                    format!("nats {what}: not connected to the server"),
                ));
            }
        }
        tokio::select! {
            biased;
            r = within(what, CALL_LIMIT, call) => r?,
            _ = rx.wait_for(|up| !*up) => Err(Error::backend(
                BackendErrorKind::Unavailable,
                format!("nats {what}: the connection to the server was lost"),
            )),
            _ = timeouts.changed() => Err(Error::backend(
                BackendErrorKind::Timeout,
                format!("nats {what}: the server stopped answering (another call timed out)"),
            )),
        }
    }
}

/// `fut`'s output, or a transient [`BackendErrorKind::Timeout`] naming
/// `what` once `limit` has passed.
pub(crate) async fn within<T>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        Error::backend(
            BackendErrorKind::Timeout,
            format!("nats {what}: no answer within {limit:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_ends_when_the_connection_drops() {
        let link = std::sync::Arc::new(Link::default());
        let l = link.clone();
        let call = tokio::spawn(async move {
            l.guard("test", std::future::pending::<Result<(), Error>>())
                .await
        });
        tokio::task::yield_now().await;
        link.set(false);
        let e = call.await.expect("joined").expect_err("ended");
        assert_eq!(e.backend_kind(), Some(BackendErrorKind::Unavailable));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_while_down_waits_for_the_connection_then_fails() {
        let link = Link::default();
        link.set(false);
        let e = link
            .guard("test", async { Ok(()) })
            .await
            .expect_err("down");
        assert!(e.is_transient());
        let link = std::sync::Arc::new(Link::default());
        link.set(false);
        let l = link.clone();
        let call = tokio::spawn(async move { l.guard("test", async { Ok(7) }).await });
        tokio::task::yield_now().await;
        link.set(true);
        assert_eq!(call.await.expect("joined").expect("ran"), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_ends_the_other_calls_in_flight() {
        let link = std::sync::Arc::new(Link::default());
        let l = link.clone();
        let other = tokio::spawn(async move {
            l.guard("other", std::future::pending::<Result<(), Error>>())
                .await
        });
        tokio::task::yield_now().await;
        let timed_out = link
            .guard("first", async {
                Err::<(), _>(Error::backend(BackendErrorKind::Timeout, "slow"))
            })
            .await;
        assert!(timed_out.is_err());
        let e = other.await.expect("joined").expect_err("ended");
        assert_eq!(e.backend_kind(), Some(BackendErrorKind::Timeout));
        // Calls begun afterwards run as usual.
        assert_eq!(link.guard("later", async { Ok(1) }).await.expect("ran"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_call_times_out() {
        let link = Link::default();
        let e = link
            .guard("test", std::future::pending::<Result<(), Error>>())
            .await
            .expect_err("timed out");
        assert_eq!(e.backend_kind(), Some(BackendErrorKind::Timeout));
    }
}
