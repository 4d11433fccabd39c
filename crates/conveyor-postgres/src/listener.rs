//! LISTEN/NOTIFY: wake-up hints for idle workers, and finished tasks for
//! result waiters.
//!
//! Enqueueing, releasing, recovering and requeueing send `pg_notify(channel,
//! queue)` inside their own transaction, so the hint arrives only once the work
//! is committed and visible. Statements that bring tasks to a final state
//! (finish, cancel, lease recovery) send one `pg_notify(finished_channel, ids)`
//! per statement the same way. One background task per backend holds a
//! dedicated connection that LISTENs on both of the schema's channels, fans
//! work notifications out to [`Listener::wait`] callers through a broadcast
//! channel, and posts finished ids on the backend's [`FinishBoard`] for
//! [`Listener::wait_finished`] callers.
//!
//! For workers it is only a hint: a waiter always returns by its timeout and
//! the worker then polls, so nothing is lost when notifications are (behind
//! PgBouncer in transaction mode, while the listener reconnects, or between a
//! worker's empty reserve and its next wait). Result waiters lose nothing
//! either: each (re)connection posts "something finished" once its LISTENs
//! are in effect, which covers whatever committed before (a waiter's mark
//! predates it), and from then on every finish is heard. While the connection
//! is down after a failure, [`Listener::finish_mark`] answers `None` and result
//! waiters poll. The task starts on the first wait or mark, so producers that
//! never wait hold no extra connection, reconnects with a backoff after any
//! failure, and stops when the backend is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{FinishBoard, FinishMark, TaskId};
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::statements::NOTIFY_QUEUE_CHARS;

/// The payload sent to waiters after (re)connecting: notifications may have
/// been missed, so every waiter should look again.
const ANY: &str = "";

/// Waiters that fall further behind than this many notifications just wake.
const FANOUT: usize = 256;

/// How often the connection checks whether a read-only refusal spent it.
const SPENT_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The connection's state, as [`Listener::finish_mark`] needs it.
mod health {
    /// Not connected yet (the first connection is under way).
    pub(super) const STARTING: u8 = 0;
    /// LISTENing on both channels.
    pub(super) const LISTENING: u8 = 1;
    /// The connection failed or closed; reconnecting.
    pub(super) const DOWN: u8 = 2;
}

/// The channels one connection LISTENs on, and where their notifications go.
#[derive(Debug, Clone)]
struct Channels {
    /// Queue names of new work.
    work: String,
    /// Ids of finished tasks.
    finished: String,
    wakeups: broadcast::Sender<Arc<str>>,
    board: Arc<FinishBoard>,
    health: Arc<AtomicU8>,
    /// Connections that reached LISTEN; every one after the first is a
    /// reconnect.
    listens: Arc<AtomicU64>,
}

/// The shared LISTEN connection of one backend.
pub(crate) struct Listener {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    channels: Channels,
    started: AtomicBool,
    /// Dropped with the backend, which ends the background task.
    stop: watch::Sender<()>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("channels", &self.channels)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Listener {
    pub(crate) fn new(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        work: String,
        finished: String,
    ) -> Self {
        let (wakeups, _) = broadcast::channel(FANOUT);
        let (stop, _) = watch::channel(());
        Self {
            config,
            tls,
            channels: Channels {
                work,
                finished,
                wakeups,
                board: Arc::new(FinishBoard::new()),
                health: Arc::new(AtomicU8::new(health::STARTING)),
                listens: Arc::default(),
            },
            started: AtomicBool::new(false),
            stop,
        }
    }

    /// Times the notification connection connected again after a loss.
    pub(crate) fn reconnects(&self) -> u64 {
        self.channels
            .listens
            .load(Ordering::Relaxed)
            .saturating_sub(1)
    }

    /// Starts listening if not yet, and returns where finish posts stand;
    /// `None` while the connection is down after a failure (wait by polling).
    pub(crate) fn finish_mark(&self) -> Option<FinishMark> {
        self.start();
        match self.channels.health.load(Ordering::Acquire) {
            health::DOWN => None,
            _ => Some(self.channels.board.mark()),
        }
    }

    /// Waits until a finish posted after `since` may concern task `id`, at
    /// most `timeout`. Always `true`: it waited on the notifications (a
    /// connection that went down posts "something finished", so its waiters
    /// read again and, asking for a mark, learn to poll).
    pub(crate) async fn wait_finished(
        &self,
        id: TaskId,
        since: FinishMark,
        timeout: Duration,
    ) -> bool {
        self.start();
        let _ = tokio::time::timeout(timeout, self.channels.board.wait(id, since)).await;
        true
    }

    /// Waits until a notification names one of `queues` (or the listener
    /// reconnected), at most `timeout`.
    pub(crate) async fn wait(&self, queues: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut rx = self.channels.wakeups.subscribe();
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
        let tls = self.tls.clone();
        let channels = self.channels.clone();
        let stop = self.stop.subscribe();
        tokio::spawn(run(config, tls, channels, stop));
    }
}

/// Listens until told to stop, reconnecting after failures.
async fn run(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    channels: Channels,
    mut stop: watch::Receiver<()>,
) {
    let channel = &channels.work;
    let mut backoff = Duration::from_millis(100);
    loop {
        let began = Instant::now();
        let outcome = tokio::select! {
            r = listen(&config, &tls, &channels) => r,
            _ = stop.changed() => return,
        };
        // Result waiters read again (and, asking for a mark, poll until the
        // connection is back).
        channels.health.store(health::DOWN, Ordering::Release);
        channels.board.post_any();
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
    tls: &MakeRustlsConnect,
    channels: &Channels,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let opened = std::time::Instant::now();
    // A server that turned read-only (`crate::read_only`) sends no more
    // notifications of new work: the promoted one does.
    let mut spent = tokio::time::interval(SPENT_CHECK_EVERY);
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The channel names come from a checked schema name: no quoting issue.
    let command = format!(
        "LISTEN \"{}\"; LISTEN \"{}\"",
        channels.work, channels.finished
    );
    let listen = client.batch_execute(&command);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            r = &mut listen, if !listening => {
                r?;
                listening = true;
                channels.listens.fetch_add(1, Ordering::Relaxed);
                channels.health.store(health::LISTENING, Ordering::Release);
                // Anything sent while we were away was missed: wake everyone.
                let _ = channels.wakeups.send(Arc::from(ANY));
                channels.board.post_any();
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() == channels.finished {
                        channels.board.post_payload(n.payload());
                    } else {
                        let _ = channels.wakeups.send(Arc::from(n.payload()));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            _ = spent.tick() => if crate::read_only::spent(opened) {
                return Ok(());
            },
        }
    }
}
