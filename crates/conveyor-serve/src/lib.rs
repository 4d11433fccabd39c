//! `conveyor serve`: a web dashboard and an HTTP JSON API over any conveyor
//! backend, the API's OpenAPI document, and Prometheus gauges of the queues.
//!
//! The dashboard's pages are listed in its module (`/`, `/tasks`,
//! `/tasks/{id}`, `/workers`, `/login`); the rest:
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/tasks`, `POST /api/v1/tasks/batch` | enqueue one, or many in one step |
//! | `GET /api/v1/tasks/{id}` | a task, with its result or last error |
//! | `GET /api/v1/tasks/{id}/wait?timeout_ms=` | long poll until it finishes |
//! | `POST /api/v1/tasks/{id}/cancel` | cancel a waiting or running task |
//! | `GET /api/v1/tasks?state=&queue=&handler=&order=&after=&limit=` | a page of tasks |
//! | `GET /api/v1/stats`, `GET /api/v1/workers` | counts per queue; the worker registry |
//! | `GET /api/v1/queues` | every queue with its counts and `paused` flag |
//! | `POST /api/v1/queues/{queue}/pause`, `POST /api/v1/queues/{queue}/resume` | hold a queue's tasks back from every worker, or let them run |
//! | `POST /api/v1/dead/requeue`, `POST /api/v1/dead/purge` | dead letters run again or deleted |
//! | `GET /metrics` | Prometheus gauges read from the store |
//! | `GET /openapi.json` | the OpenAPI 3.1 document, generated from the code |
//! | `GET /health` | 200 while the server runs (open without the token) |
//!
//! An unknown route or method gets a JSON error under `/api` and an error
//! page elsewhere, never an empty answer.
//!
//! A route a backend cannot serve answers 501 with the reason (its
//! capabilities say which; an `Unsupported` error is never hidden).
//! Security: a token ([`ServeOptions::token`]) of at least
//! [`MIN_TOKEN_LEN`] characters is required for any listen address other
//! than loopback ([`check_listen`]); every action is refused in read-only
//! mode and when a browser sends it from another site. Limits on bodies,
//! slow clients and connections are [`ServeOptions`]' and [`serve`]'s.

mod api;
mod bulk;
mod dashboard;
mod error;
mod error_bodies;
mod extract;
mod guard;
mod lenient;
mod names;
mod openapi;
mod queue_metrics;
mod server;
mod state;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use conveyor_core::Backend;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

pub use error::ApiError;
pub use names::MAX_NAME_LEN;
pub use openapi::ApiDoc;
pub use server::serve;
pub use state::{
    ServeOptions, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_GRACE,
};

/// The shortest token the server accepts: a guessable token guards nothing.
pub const MIN_TOKEN_LEN: usize = 16;

use state::AppState;

/// Why a server may not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listen address other than loopback without a token.
    #[error(
        "refusing to listen on {0} without a token: anyone who reaches it could enqueue, \
         cancel and purge tasks. Give --token (or CONVEYOR_TOKEN), or listen on 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
    /// An empty token.
    #[error("the token is empty")]
    EmptyToken,
    /// A token too short to be a secret.
    #[error(
        "the token has {0} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 16`)"
    )]
    ShortToken(usize),
}

/// Checks that the server may listen on `addr` with these options: a
/// loopback address needs nothing, any other a token; a token given is at
/// least [`MIN_TOKEN_LEN`] characters long wherever the server listens.
pub fn check_listen(addr: SocketAddr, options: &ServeOptions) -> Result<(), ServeError> {
    match options.token.as_deref() {
        Some("") => Err(ServeError::EmptyToken),
        Some(t) if t.chars().count() < MIN_TOKEN_LEN => {
            Err(ServeError::ShortToken(t.chars().count()))
        }
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(ServeError::NeedsToken(addr)),
    }
}

/// The server's routes over `backend`, with its body limit and request
/// timeout (the header timeout, the connection cap and the shutdown are
/// [`serve`]'s).
pub fn router(backend: Arc<dyn Backend>, options: ServeOptions) -> Router {
    app(backend, options, CancellationToken::new())
}

/// The routes, with live streams and long polls ending when `stopping` is
/// cancelled.
pub(crate) fn app(
    backend: Arc<dyn Backend>,
    options: ServeOptions,
    stopping: CancellationToken,
) -> Router {
    // Rendered once: the document does not change while the server runs.
    let doc: Arc<str> = serde_json::to_string(&openapi::document(&options))
        .unwrap_or_default()
        .into();
    let history = Arc::new(dashboard::history::History::default());
    dashboard::history::start_sampling(
        backend.clone(),
        Arc::downgrade(&history),
        options.sample_every,
    );
    let state = AppState {
        backend,
        options: Arc::new(options),
        history,
        live: Arc::default(),
        stopping,
    };
    let max_body = state.options.max_body;
    let request_timeout = state.options.request_timeout;
    let api = Router::new()
        .route("/tasks", post(api::tasks::enqueue).get(api::tasks::list))
        .route("/tasks/batch", post(api::tasks::enqueue_many))
        .route("/tasks/count", get(api::tasks::count))
        .route("/tasks/{id}", get(api::tasks::get))
        .route("/tasks/{id}/wait", get(api::tasks::wait))
        .route("/tasks/{id}/cancel", post(api::tasks::cancel))
        .route("/stats", get(api::overview::stats))
        .route("/workers", get(api::overview::workers))
        .route("/queues", get(api::queues::list))
        .route("/queues/{queue}/pause", post(api::queues::pause))
        .route("/queues/{queue}/resume", post(api::queues::resume))
        .route("/dead/requeue", post(api::dead::requeue))
        .route("/dead/requeue_matching", post(api::dead::requeue_matching))
        .route("/dead/purge", post(api::dead::purge))
        .route(
            "/workflows",
            post(api::workflows::submit).get(api::workflows::list),
        )
        .route("/workflows/{id}", get(api::workflows::get))
        .route("/workflows/{id}/cancel", post(api::workflows::cancel))
        .route("/workflows/{id}/retry", post(api::workflows::retry))
        .route("/schedules", get(api::schedules::list))
        .route(
            "/schedules/{name}",
            get(api::schedules::get)
                .put(api::schedules::put)
                .delete(api::schedules::remove),
        )
        .route("/schedules/{name}/pause", post(api::schedules::pause))
        .route("/schedules/{name}/resume", post(api::schedules::resume))
        .route("/schedules/{name}/trigger", post(api::schedules::trigger));
    Router::new()
        .merge(dashboard::routes())
        .nest("/api/v1", api)
        .route("/metrics", get(queue_metrics::metrics))
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(CONTENT_TYPE, "application/json")], doc.to_string()) }
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .fallback(error_bodies::not_found)
        .method_not_allowed_fallback(error_bodies::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            error_bodies::fill,
        ))
        .with_state(state)
}
