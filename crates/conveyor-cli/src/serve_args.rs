//! `conveyor serve`'s arguments: where it listens, its token, read-only,
//! and the server's limits, with the parsers they need.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Args;

use crate::units::{parse_duration, parse_size};

/// `conveyor serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen: an address or a host name and port
    /// (`localhost:8080`). Any address but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,
    /// Every request must carry `Authorization: Bearer TOKEN` (at least 16
    /// characters).
    #[arg(long, env = "CONVEYOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Refuse every action (enqueue, cancel, requeue, purge); only read.
    #[arg(long)]
    pub read_only: bool,
    /// Body size, timeouts, connections, shutdown.
    #[command(flatten)]
    pub limits: ServeLimits,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_host_names() {
        assert_eq!(
            parse_listen("127.0.0.1:8080"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        let local = parse_listen("localhost:8080").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        assert!(parse_listen("localhost").is_err(), "a port is needed");
    }
}
