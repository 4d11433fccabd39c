//! What every request handler shares: the backend, a client on it, and the
//! server's options.

use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::Backend;
use conveyor::Client;

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
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            token: None,
            read_only: false,
            refresh_every: Duration::from_secs(2),
            sample_every: Duration::from_secs(5),
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
}

/// The handlers' shared state.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) client: Client,
    pub(crate) options: Arc<ServeOptions>,
    /// The counts sampled for the charts.
    pub(crate) history: Arc<History>,
    /// The live parts' latest renders, shared by every viewer.
    pub(crate) live: Arc<LiveRenders>,
}
