//! `conveyor serve`: the web dashboard, the HTTP JSON API and the queues'
//! Prometheus gauges over the backend, until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use conveyor::durable::Backend;
use conveyor_serve::ServeOptions;

use crate::cli::ServeArgs;

/// Serves until SIGINT/SIGTERM.
pub async fn run(backend: Arc<dyn Backend>, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut options = ServeOptions::new().read_only(args.read_only);
    if let Some(token) = args.token {
        options = options.token(token);
    }
    conveyor_serve::check_listen(args.listen, &options)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen there", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        "conveyor serve: {} backend; dashboard at http://{addr}/, API at \
         http://{addr}/api/v1, OpenAPI at http://{addr}/openapi.json, metrics at \
         http://{addr}/metrics{}{}",
        backend.kind(),
        if options.token.is_some() {
            "; a token is required"
        } else {
            ""
        },
        if options.read_only { "; read-only" } else { "" },
    );
    let app = conveyor_serve::router(backend, options);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            conveyor::durable::shutdown_signal().await;
        })
        .await
        .context("serving")?;
    Ok(ExitCode::SUCCESS)
}
