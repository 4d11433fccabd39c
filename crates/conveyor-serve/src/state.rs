//! What every request handler shares: the backend, the
//! server's options and limits, and the signal that it is stopping.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::Backend;
use tokio_util::sync::CancellationToken;

use crate::dashboard::history::History;
use crate::dashboard::shared_render::LiveRenders;

/// How the server guards itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Every request but `/health` must carry `Authorization: Bearer TOKEN`.
    /// Required for any listen address other than loopback.
    pub token: Option<String>,
    /// Refuse every action (enqueue, cancel, requeue, purge, pause, resume) with
    /// 403.
    pub read_only: bool,
    /// How often the dashboard's live parts are sent again (default 2 s).
    pub refresh_every: Duration,
    /// How often the store's counts are sampled for the overview's charts
    /// (default 5 s; the last 360 samples are kept).
    pub sample_every: Duration,
    /// The largest request body read, in bytes (default
    /// [`DEFAULT_MAX_BODY`]); a larger one gets 413 naming the limit.
    pub max_body: usize,
    /// How long a client has to send a request's headers, and how long an
    /// idle kept-alive connection stays open (default
    /// [`DEFAULT_HEADER_TIMEOUT`]).
    pub header_timeout: Duration,
    /// How long a request may take, from its headers read to its answer's
    /// head, reading its body included (default [`DEFAULT_REQUEST_TIMEOUT`]):
    /// past it the answer is 408. A live stream's head is sent at once, so
    /// the stream itself is not cut.
    pub request_timeout: Duration,
    /// The most connections open at once (default
    /// [`DEFAULT_MAX_CONNECTIONS`]): one more is answered 503 and closed.
    pub max_connections: usize,
    /// On shutdown, how long requests still running may take before their
    /// connections are closed anyway (default [`DEFAULT_SHUTDOWN_GRACE`]).
    /// Live streams and long polls end at once.
    pub shutdown_grace: Duration,
}

/// The default [`ServeOptions::max_body`]: 16 MiB, room for a batch of
/// 10,000 tasks with 1 KiB of params each.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
/// The default [`ServeOptions::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`ServeOptions::request_timeout`] (longer than the longest
/// wait, 20 s).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`ServeOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// The default [`ServeOptions::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            token: None,
            read_only: false,
            refresh_every: Duration::from_secs(2),
            sample_every: Duration::from_secs(5),
            max_body: DEFAULT_MAX_BODY,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ServeOptions {
    /// No token, actions allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `token` on every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Refuses every action.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sends the dashboard's live parts again every `every` (at least 100 ms).
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every.max(Duration::from_millis(100));
        self
    }

    /// Samples the store's counts for the charts every `every` (at least 100 ms).
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.sample_every = every.max(Duration::from_millis(100));
        self
    }

    /// Reads request bodies up to `bytes` (at least 1 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes.max(1024);
        self
    }

    /// Gives clients `timeout` to send a request's headers (at least 100 ms).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout.max(Duration::from_millis(100));
        self
    }

    /// Answers 408 to a request not done within `timeout` (at least 100 ms).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.max(Duration::from_millis(100));
        self
    }

    /// Keeps at most `n` connections open at once (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Lets requests still running on shutdown take up to `grace`.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

/// The handlers' shared state.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) options: Arc<ServeOptions>,
    /// The counts sampled for the charts.
    pub(crate) history: Arc<History>,
    /// The live parts' latest renders, shared by every viewer.
    pub(crate) live: Arc<LiveRenders>,
    /// Cancelled when the server stops: live streams and long polls end.
    pub(crate) stopping: CancellationToken,
}
