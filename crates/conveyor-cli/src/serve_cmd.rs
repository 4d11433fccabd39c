//! `conveyor serve`: the web dashboard, the HTTP JSON API and the queues'
//! Prometheus gauges over the backend, until SIGINT or SIGTERM (then it
//! stops within its shutdown grace, live streams or not).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use conveyor::durable::Backend;
use conveyor_serve::ServeOptions;

use crate::serve_args::ServeArgs;

/// Serves until SIGINT/SIGTERM.
pub async fn run(backend: Arc<dyn Backend>, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let limits = args.limits;
    let mut options = ServeOptions::new()
        .read_only(args.read_only)
        .max_body(limits.max_body)
        .header_timeout(limits.header_timeout)
        .request_timeout(limits.request_timeout)
        .max_connections(limits.max_connections)
        .shutdown_grace(limits.shutdown_grace);
    if let Some(token) = args.token {
        options = options.token(token);
    }
    conveyor_serve::check_listen(args.listen, &options)?;
    // Listen for SIGINT/SIGTERM before saying where we serve: a signal sent
    // as soon as the address is known must stop the server, not kill it.
    let shutdown = conveyor::durable::shutdown_signal();
    tokio::pin!(shutdown);
    tokio::select! {
        biased;
        () = &mut shutdown => return Ok(ExitCode::SUCCESS),
        () = std::future::ready(()) => {}
    }
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
    conveyor_serve::serve(listener, backend, options, async {
        shutdown.await;
        tracing::info!("conveyor serve: stopping");
    })
    .await
    .context("serving")?;
    Ok(ExitCode::SUCCESS)
}
