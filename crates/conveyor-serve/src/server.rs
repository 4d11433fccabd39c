//! The accept loop: the router served over HTTP/1.1 on a listener, with the
//! limits that keep one client from holding the server, and a shutdown that
//! ends.
//!
//! Why not `axum::serve`: it has no header read timeout, no cap on
//! connections, and its graceful shutdown waits for every open connection,
//! so one dashboard tab holding a live stream kept a stopped server alive
//! for good. Here:
//!
//! - **Header timeout.** hyper's `header_read_timeout` (with a timer): a
//!   client that has not sent a request's whole head within
//!   [`ServeOptions::header_timeout`] is cut off, and so is a kept-alive
//!   connection idle that long (its next request's head never comes).
//! - **Connection cap.** A semaphore of [`ServeOptions::max_connections`]
//!   permits, one held per open connection: a connection past the cap is
//!   answered `503` at once and closed, so the clients already served keep
//!   their share and the server's memory stays bounded.
//! - **Request timeout and body limit** are layers of the router (see
//!   [`crate::router`]).
//! - **Shutdown.** When `shutdown` resolves the listener closes, the
//!   [`CancellationToken`] every live stream and long poll selects on is
//!   cancelled (they end at once), each connection is asked to close after
//!   its current answer, and after [`ServeOptions::shutdown_grace`] the
//!   connections still open are dropped regardless.

use std::future::Future;
use std::sync::Arc;

use conveyor_core::Backend;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::ServeOptions;

/// What a connection past the cap is told before it is closed.
const BUSY: &str = r#"{"error":"too many connections: this server is at its limit (--max-connections); try again"}"#;

/// Serves the dashboard and API over `backend` on `listener` until
/// `shutdown` resolves, then stops within the options' shutdown grace.
///
/// # Errors
///
/// Only when the listener itself fails for good; a failed connection is
/// that client's problem and is logged.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let stopping = CancellationToken::new();
    let grace = options.shutdown_grace;
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let app = crate::app(backend, options, stopping.clone());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            // The stop first: a flood of connections never starves it.
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if transient(&e) => {
                    // Out of descriptors, or a client gone before accept:
                    // wait for a connection to close rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let stopping = stopping.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stopping.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            // The permit goes back before the socket closes (when
            // `connection` is dropped), so a client that saw this one
            // closed finds the slot free.
            drop(permit);
            if let Err(e) = result {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.cancel();
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "shutdown grace over: closing the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accept errors that a later accept can get past.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// Tells a connection past the cap so and closes it, without a task or a
/// wait: the answer goes into the socket's empty send buffer at once (a
/// client that is not reading gets a closed socket), and the descriptor is
/// freed right away, so a flood of connections cannot pile up here.
fn refuse(stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BUSY}",
        BUSY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
    tracing::debug!("refused a connection past --max-connections");
}
