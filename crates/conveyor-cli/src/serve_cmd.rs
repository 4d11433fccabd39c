//! `conveyor serve`: the web dashboard, the HTTP JSON API and the queues'
//! Prometheus gauges over the backend, until SIGINT or SIGTERM (then it
//! stops within its shutdown grace, live streams or not).

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use conveyor::durable::Backend;
use conveyor_serve::ServeOptions;

use crate::cli::ServeArgs;

/// The server's limits, each with its documented default (`docs/serve.md`).
#[derive(Debug, clap::Args)]
pub struct ServeLimits {
    /// The largest request body read, e.g. 16MiB (bigger ones get 413).
    /// The default holds a batch of 10,000 tasks with 1 KiB of params each.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// How long a client has to send a request's headers; also how long an
    /// idle kept-alive connection stays open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// How long a request may take, reading its body included (408 past
    /// it). Live streams are not cut; keep it above 20s, the longest wait.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// The most connections open at once; one more is answered 503 and
    /// closed.
    #[arg(long, default_value_t = conveyor_serve::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// On SIGINT/SIGTERM, how long requests still running may take before
    /// the server closes their connections anyway (live streams and long
    /// polls end at once).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// `--listen`: an address, or a host name and port (`localhost:8080`),
/// resolved; an IPv4 address is preferred when the name has both.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let all: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("{s:?}: not an address or a host name and port ({e})"))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
        .ok_or_else(|| format!("{s:?}: the name resolves to no address"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (try 500ms, 30s, 5m)"))
}

/// `16MiB`, `512KiB`, `1GiB`, or bytes.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 16MiB, 512KiB or 1048576"))?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?}: too large"))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_host_names_and_sizes_take_units() {
        assert_eq!(
            parse_listen("127.0.0.1:8080"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        let local = parse_listen("localhost:8080").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        assert!(parse_listen("localhost").is_err(), "a port is needed");
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("12 parsecs").is_err());
    }
}
