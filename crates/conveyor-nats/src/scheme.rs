//! The NATS backend's URL: `nats://[USER:PASSWORD@]HOST:PORT` (or
//! `tls://` for TLS), with conveyor's own parameters:
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `prefix=P` | the namespace: streams `P_ready`, `P_sched`, bucket `P_tasks`, subjects `P.…` | `conveyor` |
//! | `ack_wait=S` | the consumers' `AckWait` in seconds: the broker's redelivery backstop | `30` |
//! | `max_ack_pending=N` | most unacked messages per queue and priority | `100000` |
//! | `ca=PATH` | trust this CA file (TLS) instead of the system roots | — |
//! | `replicas=N` | servers keeping each stream the namespace creates (1, or 3 or 5 on a cluster) | `1` |
//!
//! A cluster's servers may all be named, comma-separated
//! (`nats://h1:4222,h2:4222,h3:4222`): the first to answer is used, and the
//! others (with those the cluster announces) when it goes away. A user and
//! password before the first apply to every one.
//!
//! Every parameter is taken out before the URL reaches the driver, and any
//! other is refused (the driver would ignore it silently). Values are used
//! as written (no percent-decoding).

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{opening, BackendUrl, Error, OpenFuture, Scheme, SystemClock};

use crate::{NatsBackend, NatsOptions};

/// Opens a [`NatsBackend`] from `nats://HOST:PORT?prefix=P`.
pub const SCHEME: Scheme = Scheme::new(
    &["nats", "tls"],
    "nats://HOST:PORT?prefix=P",
    "NATS JetStream, streams and bucket named after the prefix P (default conveyor)",
    open,
);

/// Where to connect and how.
#[derive(Debug)]
pub(crate) struct Target {
    url: String,
    options: NatsOptions,
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, Error> {
    value.parse().map_err(|_| {
        Error::InvalidConfig(format!(
            "nats:// URL: {name}={value:?} is not a positive whole number"
        ))
    })
}

pub(crate) fn target(url: &str) -> Result<Target, Error> {
    let mut parsed = BackendUrl::parse_as(url, SCHEME.names())?;
    let mut options = NatsOptions::default();
    if let Some(p) = parsed.take("prefix")? {
        options.prefix = p.to_string();
    }
    if let Some(s) = parsed.take("ack_wait")? {
        let secs: u64 = number("ack_wait", s)?;
        if secs == 0 {
            return Err(Error::InvalidConfig(
                "nats:// URL: ack_wait must be at least 1".into(),
            ));
        }
        options.ack_wait = Duration::from_secs(secs);
    }
    if let Some(n) = parsed.take("max_ack_pending")? {
        let n: i64 = number("max_ack_pending", n)?;
        if n < 1 {
            return Err(Error::InvalidConfig(
                "nats:// URL: max_ack_pending must be at least 1".into(),
            ));
        }
        options.max_ack_pending = n;
    }
    if let Some(n) = parsed.take("replicas")? {
        let n: usize = number("replicas", n)?;
        if !(1..=5).contains(&n) {
            return Err(Error::InvalidConfig(format!(
                "nats:// URL: replicas={n} is outside 1..=5 (JetStream's limit)"
            )));
        }
        options.replicas = n;
    }
    options.ca = parsed.take("ca")?.map(std::path::PathBuf::from);
    parsed.allow_only(&[])?;
    crate::names::Names::new(&options.prefix)?;
    Ok(Target {
        url: parsed.to_url(),
        options,
    })
}

/// The server addresses of `url` (`SCHEME://[AUTH@]HOST:PORT[,HOST:PORT…]`,
/// without parameters), each with the scheme and the credentials.
pub(crate) fn servers(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_string()];
    };
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    hosts
        .split(',')
        .map(|h| format!("{scheme}://{auth}{h}"))
        .collect()
}

fn open(url: &str) -> OpenFuture {
    opening(target(url), |Target { url, options }| async move {
        NatsBackend::connect_options(&url, options, Arc::new(SystemClock)).await
    })
}

#[cfg(test)]
mod tests {
    use super::target;
    use conveyor_core::Error;
    use std::time::Duration;

    #[test]
    fn accepted_forms_and_defaults() {
        let t = target("nats://127.0.0.1:4222").expect("plain");
        assert_eq!(t.url, "nats://127.0.0.1:4222");
        assert_eq!(t.options.prefix, "conveyor");
        assert_eq!(t.options.ack_wait, Duration::from_secs(30));
        assert_eq!(t.options.max_ack_pending, 100_000);
        assert_eq!(t.options.ca, None);
        let t = target("NATS://u:pw@h:1?prefix=app_1-a&ack_wait=5&max_ack_pending=7").expect("all");
        assert_eq!(t.url, "NATS://u:pw@h:1");
        assert_eq!(t.options.prefix, "app_1-a");
        assert_eq!(t.options.ack_wait, Duration::from_secs(5));
        assert_eq!(t.options.max_ack_pending, 7);
        let t = target("tls://h:4222?ca=/etc/ca.pem").expect("tls");
        assert_eq!(t.url, "tls://h:4222");
        assert_eq!(
            t.options.ca.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
    }

    #[test]
    fn clusters_and_replicas() {
        let t = target("nats://u:p@a:1,b:2,c:3?replicas=3").expect("cluster");
        assert_eq!(t.options.replicas, 3);
        assert_eq!(
            super::servers(&t.url),
            ["nats://u:p@a:1", "nats://u:p@b:2", "nats://u:p@c:3"]
        );
        assert_eq!(super::servers("tls://h:1"), ["tls://h:1"]);
        for bad in ["0", "6", "x"] {
            let e = target(&format!("nats://h?replicas={bad}")).expect_err(bad);
            assert!(e.to_string().contains("replicas"), "{e}");
        }
    }

    #[test]
    fn unknown_parameters_bad_values_and_other_schemes_are_refused() {
        let msg = target("nats://h?prefx=a").expect_err("typo").to_string();
        assert!(msg.contains("\"prefx\""), "{msg}");
        for url in [
            "nats://h?prefx=a",
            "nats://h?prefix=a&prefix=b",
            "nats://h?prefix=a.b",
            "nats://h?ack_wait=0",
            "nats://h?ack_wait=soon",
            "nats://h?max_ack_pending=-1",
            "redis://h/0",
            "./q.db",
        ] {
            assert!(matches!(target(url), Err(Error::InvalidConfig(_))), "{url}");
        }
    }
}
