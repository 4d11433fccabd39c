//! `kafka://` URLs: one string that says where to read, as which group, and how.
//!
//! ```text
//! kafka://HOST:PORT[,HOST:PORT…]/TOPIC[,TOPIC…]?group=G[&ordering=key|partition|unordered]
//!        [&max_in_flight=N][&read_ahead=N][&dlq=TOPIC|none][&start=earliest|latest]
//!        [&session_timeout_ms=MS][&commit_interval_ms=MS][&revoke_timeout_ms=MS]
//!        [&pause_after_ms=MS]
//! ```
//!
//! `group` is required: two programs that silently share a default group would
//! split a topic's messages between them. `dlq` defaults to `<topic>.dlq`.
//! Values may be percent-encoded.

use std::time::Duration;

use crate::config::{ConsumerConfig, DeadLetter, StartFrom};
use crate::error::Error;

/// Parses a `kafka://` URL into a consumer configuration.
pub fn parse_url(url: &str) -> Result<ConsumerConfig, Error> {
    let rest = url
        .strip_prefix("kafka://")
        .ok_or_else(|| Error::Config(format!("{url:?}: expected a kafka:// URL")))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (brokers, topics) = path
        .split_once('/')
        .ok_or_else(|| Error::Config(format!("{url:?}: no topic (kafka://HOST:PORT/TOPIC)")))?;
    if brokers.is_empty() {
        return Err(Error::Config(format!("{url:?}: no broker address")));
    }
    let topics = topics
        .split(',')
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    let mut group = None;
    let mut config = ConsumerConfig::new(brokers, "", topics);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v)?;
        match k {
            "group" => group = Some(v),
            "ordering" => config.ordering = v.parse()?,
            "max_in_flight" => config.max_in_flight = number(k, &v)?,
            "read_ahead" => config.read_ahead = number(k, &v)?,
            "dlq" => {
                config.dead_letter = match v.as_str() {
                    "none" | "" => DeadLetter::Drop,
                    _ => DeadLetter::Topic(v),
                }
            }
            "start" => {
                config.start_from = match v.as_str() {
                    "earliest" => StartFrom::Earliest,
                    "latest" => StartFrom::Latest,
                    _ => {
                        return Err(Error::Config(format!(
                            "start={v:?}: expected earliest or latest"
                        )))
                    }
                }
            }
            "session_timeout_ms" => config.session_timeout = Some(millis(k, &v)?),
            "commit_interval_ms" => config.commit_interval = millis(k, &v)?,
            "revoke_timeout_ms" => config.revoke_timeout = millis(k, &v)?,
            "pause_after_ms" => config.pause_after = millis(k, &v)?,
            other => {
                return Err(Error::Config(format!(
                    "{url:?}: unknown parameter {other:?}"
                )))
            }
        }
    }
    config.group = group.ok_or_else(|| {
        Error::Config(format!(
            "{url:?}: the consumer group is required (?group=NAME)"
        ))
    })?;
    config.validate()?;
    Ok(config)
}

fn number(key: &str, v: &str) -> Result<usize, Error> {
    v.parse()
        .map_err(|_| Error::Config(format!("{key}={v:?}: expected a whole number")))
}

fn millis(key: &str, v: &str) -> Result<Duration, Error> {
    number(key, v).map(|n| Duration::from_millis(n as u64))
}

/// Percent-decoding of one URL component.
fn decode(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::Config(format!("{s:?}: bad percent-encoding")))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::Config(format!("{s:?}: not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ordering;

    #[test]
    fn full_url() {
        let c = parse_url(
            "kafka://127.0.0.1:9092/orders?group=billing&ordering=partition&max_in_flight=8&dlq=failed&start=latest&session_timeout_ms=6000&pause_after_ms=250",
        )
        .expect("valid");
        assert_eq!(c.brokers, "127.0.0.1:9092");
        assert_eq!(c.topics, vec!["orders".to_string()]);
        assert_eq!(c.group, "billing");
        assert_eq!(c.ordering, Ordering::Partition);
        assert_eq!(c.max_in_flight, 8);
        assert_eq!(c.read_ahead, crate::DEFAULT_READ_AHEAD);
        assert_eq!(c.dead_letter, DeadLetter::Topic("failed".into()));
        assert_eq!(c.start_from, StartFrom::Latest);
        assert_eq!(c.session_timeout, Some(Duration::from_secs(6)));
        assert_eq!(c.pause_after, Duration::from_millis(250));
    }

    #[test]
    fn defaults() {
        let c = parse_url("kafka://127.0.0.1:9092/a,b?group=g").expect("valid");
        assert_eq!(c.topics, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(c.ordering, Ordering::Key);
        assert_eq!(c.max_in_flight, crate::DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(c.pause_after, crate::DEFAULT_PAUSE_AFTER);
        assert_eq!(c.dead_letter, DeadLetter::Suffix(".dlq".into()));
    }

    #[test]
    fn errors() {
        for bad in [
            "redis://127.0.0.1/x?group=g",
            "kafka://127.0.0.1:9092?group=g",
            "kafka://127.0.0.1:9092/t",
            "kafka://127.0.0.1:9092/t?group=g&ordering=random",
            "kafka://127.0.0.1:9092/t?group=g&max_in_flight=0",
            "kafka://127.0.0.1:9092/t?group=g&pause_after_ms=60001",
            "kafka://127.0.0.1:9092/t?group=g&colour=blue",
            "kafka://127.0.0.1:9092/t?group=%zz",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn percent_decoding() {
        let c = parse_url("kafka://127.0.0.1:9092/t?group=a%20b%2Fc").expect("valid");
        assert_eq!(c.group, "a b/c");
        assert!(parse_url("kafka://127.0.0.1:9092/t?dlq=none&group=g")
            .is_ok_and(|c| c.dead_letter == DeadLetter::Drop));
    }
}
