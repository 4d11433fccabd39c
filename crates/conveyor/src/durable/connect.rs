//! Opening a backend by URL, the way the CLI and workers name where tasks
//! wait: which URL to use ([`resolve_url`]: the one given, else
//! `CONVEYOR_URL`, else [`DEFAULT_URL`]) and [`connect`], which opens it
//! through the default [`Schemes`] registry.
//!
//! What a URL may look like is each backend's own business (its crate's
//! `SCHEME`); `docs/backends.md` has the table.

use std::sync::Arc;

use conveyor_core::{Backend, Error};

use super::schemes::Schemes;

/// The backend used when neither a URL nor `CONVEYOR_URL` is given.
pub const DEFAULT_URL: &str = "embedded://./conveyor.db";

/// The environment variable naming the backend URL.
pub const URL_ENV: &str = "CONVEYOR_URL";

/// The URL to use: `url` if given, else `CONVEYOR_URL`, else [`DEFAULT_URL`].
pub fn resolve_url(url: Option<&str>) -> String {
    match url {
        Some(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => std::env::var(URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string()),
    }
}

/// Opens the backend a URL names with the schemes of the backends compiled in
/// ([`Schemes::default`]); a program with a backend of its own uses
/// [`Schemes::connect`] instead.
pub async fn connect(url: &str) -> Result<Arc<dyn Backend>, Error> {
    Schemes::default().connect(url).await
}

/// [`connect`], but only to a store that already exists: nothing is created
/// (see [`Schemes::connect_existing`]).
pub async fn connect_existing(url: &str) -> Result<Arc<dyn Backend>, Error> {
    Schemes::default().connect_existing(url).await
}
