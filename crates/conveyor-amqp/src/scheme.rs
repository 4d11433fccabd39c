//! The RabbitMQ backend's URL: `amqp://USER:PASSWORD@HOST:PORT/VHOST` (or
//! `amqps://` for TLS), with conveyor's own parameters `prefix=` (every name
//! under it; default [`DEFAULT_PREFIX`]), `hold=` (how long a delivery stays
//! unacknowledged before a long task moves to custody, e.g. `10m`; keep it
//! below the server's `consumer_timeout`), `delivery_limit=`, `prefetch=`,
//! `max_value=BYTES` (refuse params and results over it; for a broker whose
//! `max_message_size` is below the default) and
//! `results=redis://HOST:PORT/DB?prefix=P` (a store beside the broker that
//! keeps the task records: any backend with the record keeper part, opened
//! by conveyor's scheme registry, up to the next `&`), and the client's
//! `heartbeat`, `connection_timeout`, `channel_max`, `frame_max` and
//! `auth_mechanism`. Any other parameter is refused.
//!
//! The vhost is the URL's path, percent-encoded as RabbitMQ expects
//! (`/%2f` for the default vhost `/`, which is also what an empty path means).

use std::sync::Arc;

use conveyor_core::{opening, Backend, BackendUrl, Error, OpenFuture, Scheme, SystemClock};

/// The URL parameter naming the store that keeps the task records.
const RECORDS_PARAM: &str = "results";

use crate::{AmqpBackend, AmqpOptions};

/// Opens an [`AmqpBackend`] from `amqp://HOST:PORT/VHOST?prefix=P`.
pub const SCHEME: Scheme = Scheme::new(
    &["amqp", "amqps"],
    "amqp://guest:guest@127.0.0.1:5672/%2f?prefix=P",
    "RabbitMQ quorum queues, names under the prefix P (default conveyor); \
     results=redis://… keeps task records beside the broker",
    open,
)
.with_record_keeper(RECORDS_PARAM, open_keeping);

/// The client's own parameters, passed on as written.
const CLIENT_PARAMS: &[&str] = &[
    "heartbeat",
    "connection_timeout",
    "channel_max",
    "frame_max",
    "auth_mechanism",
];

/// Where to connect and how.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) options: AmqpOptions,
}

pub(crate) fn target(url: &str) -> Result<Target, Error> {
    let mut parsed = BackendUrl::parse_as(url, SCHEME.names())?;
    let mut options = AmqpOptions::default();
    if let Some(p) = parsed.take("prefix")? {
        options.prefix = p.to_string();
    }
    if let Some(h) = parsed.take("hold")? {
        options.hold = humantime::parse_duration(h)
            .map_err(|e| Error::InvalidConfig(format!("amqp hold={h}: {e} (e.g. hold=10m)")))?;
    }
    if let Some(n) = parsed.take("delivery_limit")? {
        options.delivery_limit = n
            .parse()
            .map_err(|_| Error::InvalidConfig(format!("amqp delivery_limit={n}: not a number")))?;
    }
    if let Some(n) = parsed.take("prefetch")? {
        options.prefetch = Some(n.parse().map_err(|_| {
            Error::InvalidConfig(format!("amqp prefetch={n}: not a number up to 65535"))
        })?);
    }
    if parsed.take(RECORDS_PARAM)?.is_some() {
        return Err(Error::InvalidConfig(format!(
            "amqp {RECORDS_PARAM}=: the store that keeps task records is opened by conveyor's \
             scheme registry (conveyor::durable::connect), not by this scheme alone; \
             or open it and pass it to AmqpBackend::connect_keeping"
        )));
    }
    options.max_value = parsed.take_max_value()?;
    parsed.allow_only(CLIENT_PARAMS)?;
    options.validate()?;
    Ok(Target {
        url: parsed.to_url(),
        options,
    })
}

fn open(url: &str) -> OpenFuture {
    opening(target(url), |Target { url, options }| async move {
        AmqpBackend::connect(&url, options, Arc::new(SystemClock)).await
    })
}

fn open_keeping(url: &str, keeper: Arc<dyn Backend>) -> OpenFuture {
    opening(target(url), |Target { url, options }| async move {
        AmqpBackend::connect_keeping(&url, options, Arc::new(SystemClock), keeper).await
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::DEFAULT_PREFIX;

    #[test]
    fn defaults_and_parameters() {
        let t = target("amqp://127.0.0.1:5672/%2f").unwrap();
        assert_eq!(t.url, "amqp://127.0.0.1:5672/%2f");
        assert_eq!(t.options, AmqpOptions::default());
        assert_eq!(t.options.prefix, DEFAULT_PREFIX);

        let t = target(
            "amqps://u:p@h:5671/v?prefix=app1&hold=10m&delivery_limit=5&prefetch=64&heartbeat=10",
        )
        .unwrap();
        assert_eq!(t.url, "amqps://u:p@h:5671/v?heartbeat=10");
        assert_eq!(t.options.prefix, "app1");
        assert_eq!(t.options.hold, Duration::from_secs(600));
        assert_eq!(t.options.delivery_limit, 5);
        assert_eq!(t.options.prefetch, Some(64));
        let t = target("amqp://h/?max_value=4096").unwrap();
        assert_eq!(t.options.max_value, Some(4096));
        assert_eq!(SCHEME.record_keeper_param(), Some("results"));
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        let err = |u: &str| target(u).unwrap_err().to_string();
        assert!(err("amqp://h/?colour=blue").contains("colour"));
        assert!(err("redis://h/").contains("redis"));
        assert!(err("amqp://h/?hold=soon").contains("hold"));
        assert!(err("amqp://h/?hold=10ms").contains("at least 1s"));
        assert!(err("amqp://h/?delivery_limit=0").contains("delivery_limit"));
        assert!(err("amqp://h/?prefetch=99999").contains("prefetch"));
        assert!(err("amqp://h/?prefix=").contains("prefix"));
        assert!(err("amqp://h/?max_value=0").contains("max_value"));
        assert!(err("amqp://h/?max_value=1k").contains("max_value"));
        // The store beside the broker is the registry's to open.
        assert!(err("amqp://h/?results=redis://127.0.0.1:6379/2").contains("connect_keeping"));
    }
}
