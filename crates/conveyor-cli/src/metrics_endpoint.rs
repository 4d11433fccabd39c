//! `conveyor worker --metrics ADDR` (and `conveyor run --from kafka://…
//! --metrics ADDR`): Prometheus metrics served over HTTP at `/metrics` while
//! the worker or consumer runs.
//!
//! The endpoint only reads, so it needs no token; bind it to loopback or a
//! private network the scraper reaches.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use conveyor::metrics::Metrics;

/// A running endpoint; stops when dropped.
pub struct MetricsEndpoint {
    task: tokio::task::JoinHandle<()>,
    /// Where it listens (the port chosen when the address asked for 0).
    pub addr: SocketAddr,
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `metrics` there; an address that cannot be bound
/// is an error before the worker starts.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> anyhow::Result<MetricsEndpoint> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(metrics);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(CONTENT_TYPE, conveyor::metrics::CONTENT_TYPE)],
                    metrics.encode(),
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(MetricsEndpoint { task, addr })
}
