//! What every request handler shares: the backend, a client on it, and the
//! server's options.

use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor::Client;

/// How the server guards itself.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Every request but `/health` must carry `Authorization: Bearer TOKEN`.
    /// Required for any listen address other than loopback.
    pub token: Option<String>,
    /// Refuse every action (enqueue, cancel, requeue, purge, pause, resume) with
    /// 403.
    pub read_only: bool,
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
}

/// The handlers' shared state.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) client: Client,
    pub(crate) options: Arc<ServeOptions>,
}
