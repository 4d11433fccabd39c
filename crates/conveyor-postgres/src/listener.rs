//! LISTEN/NOTIFY as a wake-up hint for idle workers.
//!
//! Enqueueing, releasing, recovering and requeueing send `pg_notify(channel,
//! queue)` inside their own transaction, so the hint arrives only once the work
//! is committed and visible. One background task per backend holds a dedicated
//! connection that LISTENs on the schema's channel and fans notifications out to
//! [`Listener::wait`] callers through a broadcast channel.
//!
//! It is only a hint: a waiter always returns by its timeout and the worker then
//! polls, so nothing is lost when notifications are (behind PgBouncer in
//! transaction mode, while the listener reconnects, or between a worker's empty
//! reserve and its next wait). The task starts on the first wait, so producers
//! that never wait hold no extra connection, reconnects with a backoff after
//! any failure, and stops when the backend is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::statements::NOTIFY_QUEUE_CHARS;

/// The payload sent to waiters after (re)connecting: notifications may have
/// been missed, so every waiter should look again.
const ANY: &str = "";

/// Waiters that fall further behind than this many notifications just wake.
const FANOUT: usize = 256;

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The shared LISTEN connection of one backend.
#[derive(Debug)]
pub(crate) struct Listener {
    config: tokio_postgres::Config,
    channel: String,
    wakeups: broadcast::Sender<Arc<str>>,
    started: AtomicBool,
    /// Dropped with the backend, which ends the background task.
    stop: watch::Sender<()>,
}

impl Listener {
    pub(crate) fn new(config: tokio_postgres::Config, channel: String) -> Self {
        let (wakeups, _) = broadcast::channel(FANOUT);
        let (stop, _) = watch::channel(());
        Self {
            config,
            channel,
            wakeups,
            started: AtomicBool::new(false),
            stop,
        }
    }

    /// Waits until a notification names one of `queues` (or the listener
    /// reconnected), at most `timeout`.
    pub(crate) async fn wait(&self, queues: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut rx = self.wakeups.subscribe();
        self.start();
        let wanted: Vec<String> = queues
            .iter()
            .map(|q| q.chars().take(NOTIFY_QUEUE_CHARS).collect())
            .collect();
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return,
                Ok(Ok(queue)) => {
                    if &*queue == ANY || wanted.iter().any(|w| w.as_str() == &*queue) {
                        return;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => return,
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
        }
    }

    /// Starts the background task once.
    fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let config = self.config.clone();
        let channel = self.channel.clone();
        let wakeups = self.wakeups.clone();
        let stop = self.stop.subscribe();
        tokio::spawn(run(config, channel, wakeups, stop));
    }
}

/// Listens until told to stop, reconnecting after failures.
async fn run(
    config: tokio_postgres::Config,
    channel: String,
    wakeups: broadcast::Sender<Arc<str>>,
    mut stop: watch::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let began = Instant::now();
        let outcome = tokio::select! {
            r = listen(&config, &channel, &wakeups) => r,
            _ = stop.changed() => return,
        };
        match outcome {
            Ok(()) => tracing::debug!(%channel, "notification connection closed; reconnecting"),
            Err(e) => {
                tracing::debug!(%channel, error = %e, "notification connection failed; reconnecting")
            }
        }
        if began.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: LISTEN, then forward notifications until it ends.
async fn listen(
    config: &tokio_postgres::Config,
    channel: &str,
    wakeups: &broadcast::Sender<Arc<str>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The channel name comes from a checked schema name: no quoting issue.
    let command = format!("LISTEN \"{channel}\"");
    let listen = client.batch_execute(&command);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            r = &mut listen, if !listening => {
                r?;
                listening = true;
                // Anything sent while we were away was missed: wake everyone.
                let _ = wakeups.send(Arc::from(ANY));
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let _ = wakeups.send(Arc::from(n.payload()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}
