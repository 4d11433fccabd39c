//! The Redis backend's URL: `redis://[USER:PASSWORD@]HOST:PORT/DB` (or
//! `rediss://` for TLS), with conveyor's own parameter `prefix=P` (every key
//! under `P`; default [`DEFAULT_PREFIX`]), `scripts=auto|functions|eval` (how
//! the Lua code reaches the server: see [`ScriptMode`]), `max_value=BYTES`
//! (refuse params and results over it: [`RedisBackend::with_max_value`]) and
//! the driver's `protocol=`; `replicas=N` (every write waits until N
//! replicas have it, at most `replicas_timeout_ms=MS`, default 1000:
//! [`RedisBackend::with_replicas`]).
//!
//! `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]?prefix={TAG}:`
//! names seed nodes of a Redis Cluster (`rediss+cluster://` for TLS); the
//! prefix must hold a hash tag, so the namespace is one slot (see the
//! `cluster` module).
//!
//! `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB]`
//! names Redis Sentinels instead of a server (`rediss+sentinel://` for TLS);
//! calls go to the primary they name, and follow it through a failover
//! (see the `sentinel` and `primary` modules). The sentinels' own
//! credentials, when they ask for some, are `sentinel_user=` and
//! `sentinel_password=`.
//!
//! `prefix` is taken out before the URL reaches the driver and used as written
//! (no percent-decoding), so keep it to letters, digits, `_`, `-`, `:`, `.`
//! and a hash tag's `{` and `}`. So are the TLS files `ca`, `cert` and `key` (see the `tls` module).
//! Any other parameter is refused: the driver would ignore it silently.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{opening, BackendUrl, Error, OpenFuture, Scheme, SystemClock};

use std::path::PathBuf;

use crate::{RedisBackend, RedisTls, ScriptMode, DEFAULT_PREFIX};

/// Opens a [`RedisBackend`] from `redis://HOST:PORT/DB?prefix=P`.
pub const SCHEME: Scheme = Scheme::new(
    &[
        "redis",
        "rediss",
        "redis+sentinel",
        "rediss+sentinel",
        "redis+cluster",
        "rediss+cluster",
    ],
    "redis://HOST:PORT/DB?prefix=P",
    "Redis, keys under the prefix P (default conveyor:)",
    open,
);

/// The parameters a Redis URL may carry: conveyor's, then the driver's.
const PARAMS: &[&str] = &[
    "prefix",
    "scripts",
    "max_value",
    "replicas",
    "replicas_timeout_ms",
    "protocol",
    "sentinel_user",
    "sentinel_password",
];

/// How long a write waits for its replicas unless `replicas_timeout_ms=`
/// says otherwise.
const REPLICAS_TIMEOUT: Duration = Duration::from_secs(1);

/// Where to connect: the driver's URL, the key prefix and TLS files.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    url: String,
    prefix: String,
    tls: RedisTls,
    scripts: ScriptMode,
    max_value: Option<usize>,
    /// Replicas every write waits for, and for how long.
    replicas: Option<(u32, Duration)>,
}

pub(crate) fn target(url: &str) -> Result<Target, Error> {
    let mut parsed = BackendUrl::parse_as(url, SCHEME.names())?;
    let prefix = parsed.take("prefix")?.unwrap_or(DEFAULT_PREFIX).to_string();
    let max_value = parsed.take_max_value()?;
    let scripts = match parsed.take("scripts")? {
        None => ScriptMode::Auto,
        Some(s) => ScriptMode::parse(s).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "unknown Redis scripts={s:?} (expected auto, functions or eval)"
            ))
        })?,
    };
    let number = |name: &str, v: &str| {
        v.parse::<u32>()
            .map_err(|_| Error::InvalidConfig(format!("Redis {name}={v:?} is not a whole number")))
    };
    let replicas = parsed
        .take("replicas")?
        .map(|v| number("replicas", v))
        .transpose()?;
    let timeout = parsed
        .take("replicas_timeout_ms")?
        .map(|v| number("replicas_timeout_ms", v))
        .transpose()?;
    let replicas = match (replicas, timeout) {
        (Some(0), _) | (None, None) => None,
        (Some(n), t) => {
            let within = t.map_or(REPLICAS_TIMEOUT, |ms| Duration::from_millis(ms.into()));
            if within.is_zero() || within > crate::primary::MAX_WAIT {
                return Err(Error::InvalidConfig(format!(
                    "Redis replicas_timeout_ms={} is outside 1..={} (the wait is part of the \
                     time a call may take)",
                    within.as_millis(),
                    crate::primary::MAX_WAIT.as_millis()
                )));
            }
            Some((n, within))
        }
        (None, Some(_)) => {
            return Err(Error::InvalidConfig(
                "Redis replicas_timeout_ms= needs replicas=N".into(),
            ))
        }
    };
    let ca = parsed.take("ca")?.map(PathBuf::from);
    let cert = parsed.take("cert")?.map(PathBuf::from);
    let key = parsed.take("key")?.map(PathBuf::from);
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(Error::InvalidConfig(
                "a Redis client certificate needs both cert= and key=".into(),
            ))
        }
    };
    parsed.allow_only(PARAMS)?;
    let sentinel = crate::sentinel::is_sentinel(url);
    if let Some((name, _)) = parsed
        .params()
        .iter()
        .find(|(k, _)| k.starts_with("sentinel_"))
    {
        if !sentinel {
            return Err(Error::InvalidConfig(format!(
                "Redis {name}= is for redis+sentinel:// URLs"
            )));
        }
    }
    Ok(Target {
        url: parsed.to_url(),
        prefix,
        tls: RedisTls { ca, client },
        scripts,
        max_value,
        replicas,
    })
}

fn open(url: &str) -> OpenFuture {
    opening(target(url), |t: Target| async move {
        let backend = RedisBackend::connect_using(
            &t.url,
            &t.prefix,
            Arc::new(SystemClock),
            &t.tls,
            t.scripts,
        )
        .await?;
        let backend = match t.replicas {
            Some((n, within)) => backend.with_replicas(n, within),
            None => backend,
        };
        Ok(match t.max_value {
            Some(cap) => backend.with_max_value(cap),
            None => backend,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{target, Target};
    use crate::ScriptMode;
    use conveyor_core::Error;

    fn t(url: &str, prefix: &str) -> Target {
        Target {
            url: url.into(),
            prefix: prefix.into(),
            tls: Default::default(),
            scripts: ScriptMode::Auto,
            max_value: None,
            replicas: None,
        }
    }

    #[test]
    fn accepted_forms_and_defaults() {
        let cases = [
            (
                "redis://127.0.0.1:6379/0",
                t("redis://127.0.0.1:6379/0", "conveyor:"),
            ),
            (
                "redis://127.0.0.1:6379/0?prefix=app1:",
                t("redis://127.0.0.1:6379/0", "app1:"),
            ),
            (
                "rediss://u:pw@h:1/2?protocol=resp3&prefix=a.b-c",
                t("rediss://u:pw@h:1/2?protocol=resp3", "a.b-c"),
            ),
            ("REDIS://h", t("REDIS://h", "conveyor:")),
            (
                "redis://h/0?prefix=p#insecure",
                t("redis://h/0#insecure", "p"),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(target(url).expect(url), want, "{url}");
        }
        for (url, want) in [
            ("redis://h?scripts=eval", ScriptMode::Eval),
            ("redis://h?scripts=functions", ScriptMode::Functions),
            ("redis://h?scripts=auto&prefix=p", ScriptMode::Auto),
        ] {
            let got = target(url).expect(url);
            assert_eq!((got.url.as_str(), got.scripts), ("redis://h", want));
        }
    }

    #[test]
    fn max_value_is_taken_out_and_checked() {
        let got = target("redis://h/0?max_value=4096&prefix=p").expect("url");
        assert_eq!(
            (got.max_value, got.url.as_str()),
            (Some(4096), "redis://h/0")
        );
        for bad in ["0", "-1", "1k", ""] {
            let e = target(&format!("redis://h/0?max_value={bad}")).expect_err(bad);
            assert!(e.to_string().contains("max_value"), "{e}");
        }
    }

    #[test]
    fn unknown_parameters_and_other_schemes_are_refused() {
        let msg = target("redis://h/0?prefx=a").expect_err("typo").to_string();
        assert!(
            msg.contains("\"prefx\"") && msg.contains("prefix, scripts, max_value, replicas"),
            "{msg}"
        );
        for url in [
            "redis://h/0?prefx=a",
            "redis://h/0?prefix=a&prefix=b",
            "redis://h/0?scripts=lua",
            "redis://h/0?scripts=eval&scripts=eval",
            "redis://h/0?sentinel_password=x",
            "redis://h/0?replicas=x",
            "redis://h/0?replicas_timeout_ms=5",
            "redis://h/0?replicas=1&replicas_timeout_ms=0",
            "redis://h/0?replicas=1&replicas_timeout_ms=1501",
            "postgres://h/db",
            "./q.db",
        ] {
            assert!(matches!(target(url), Err(Error::InvalidConfig(_))), "{url}");
        }
    }

    #[test]
    fn replicas_and_sentinels() {
        let got = target("redis://h/0?replicas=1&prefix=p").expect("url");
        assert_eq!(got.replicas, Some((1, super::REPLICAS_TIMEOUT)));
        let got = target("redis://h/0?replicas=2&replicas_timeout_ms=250").expect("url");
        assert_eq!(
            (got.replicas, got.url.as_str()),
            (
                Some((2, std::time::Duration::from_millis(250))),
                "redis://h/0"
            )
        );
        assert_eq!(
            target("redis://h/0?replicas=0").expect("url").replicas,
            None
        );
        let got = target("redis+sentinel://a:1,b:2/m/0?prefix=p&sentinel_password=s").expect("url");
        assert_eq!(
            (got.url.as_str(), got.prefix.as_str()),
            ("redis+sentinel://a:1,b:2/m/0?sentinel_password=s", "p")
        );
    }
}
