//! Opening a backend by URL, the way the CLI and workers name where tasks wait.
//!
//! | URL | backend |
//! |---|---|
//! | `embedded://./conveyor.db`, `embedded:///abs/path.db`, or a bare path | one local SQLite file (the default) |
//! | `memory://` | in this process only (tests, demos) |
//! | `redis://HOST:PORT/DB` | Redis (feature `redis`); keys under `conveyor:` |
//! | `redis://HOST:PORT/DB?prefix=P` | Redis with every key under the prefix `P` (its own namespace) |
//! | `postgres://USER@HOST/DB` | PostgreSQL (feature `postgres`); tables in schema `conveyor`, migrated on connect |
//! | `postgres://USER@HOST/DB?schema=S` | PostgreSQL with the tables in schema `S` |
//!
//! `prefix` and `schema` are taken out of the URL before it reaches the
//! driver; their values are used as written (no percent-decoding), so keep
//! them to letters, digits, `_`, `-`, `:` and `.` (a schema: letters, digits
//! and `_`).
//!
//! With no URL, `CONVEYOR_URL` is used, and without it [`DEFAULT_URL`].

use std::sync::Arc;

use conveyor_core::{Backend, Error};

use conveyor_memory::MemoryBackend;

/// The backend used when neither a URL nor `CONVEYOR_URL` is given.
pub const DEFAULT_URL: &str = "embedded://./conveyor.db";

/// The environment variable naming the backend URL.
pub const URL_ENV: &str = "CONVEYOR_URL";

/// The URL to use: `url` if given, else `CONVEYOR_URL`, else [`DEFAULT_URL`].
pub fn resolve_url(url: Option<&str>) -> String {
    match url {
        Some(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => std::env::var(URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string()),
    }
}

/// Opens the backend a URL names (see the module documentation).
pub async fn connect(url: &str) -> Result<Arc<dyn Backend>, Error> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None if url.starts_with("memory:") => ("memory".to_string(), ""),
        None => ("embedded".to_string(), url),
    };
    match scheme.as_str() {
        "memory" => Ok(Arc::new(MemoryBackend::new())),
        "embedded" | "sqlite" | "file" => open_embedded(rest),
        "redis" | "rediss" => open_redis(url).await,
        "postgres" | "postgresql" => open_postgres(url).await,
        other => Err(Error::InvalidConfig(format!(
            "unknown backend {other:?} in {url:?}: expected embedded://PATH, redis://HOST:PORT/DB, postgres://USER@HOST/DB or memory://"
        ))),
    }
}

fn open_embedded(path: &str) -> Result<Arc<dyn Backend>, Error> {
    if path.is_empty() {
        return Err(Error::InvalidConfig(
            "embedded:// needs a file path, e.g. embedded://./conveyor.db".into(),
        ));
    }
    #[cfg(feature = "embedded")]
    {
        Ok(Arc::new(conveyor_embedded::EmbeddedBackend::open(path)?))
    }
    #[cfg(not(feature = "embedded"))]
    {
        Err(Error::Unsupported(format!(
            "the embedded backend ({path}) is not built in: enable conveyor's \"embedded\" feature"
        )))
    }
}

/// Takes the query parameter `name` out of `url`: the URL without it, and its
/// value if it was there.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == name {
                value = Some(v.to_string());
                false
            } else {
                !pair.is_empty()
            }
        })
        .collect();
    if rest.is_empty() {
        (base.to_string(), value)
    } else {
        (format!("{base}?{}", rest.join("&")), value)
    }
}

async fn open_redis(url: &str) -> Result<Arc<dyn Backend>, Error> {
    #[cfg(feature = "redis")]
    {
        let (url, prefix) = take_param(url, "prefix");
        let prefix = prefix.unwrap_or_else(|| conveyor_redis::DEFAULT_PREFIX.to_string());
        Ok(Arc::new(
            conveyor_redis::RedisBackend::connect_with(
                &url,
                &prefix,
                Arc::new(conveyor_core::SystemClock),
            )
            .await?,
        ))
    }
    #[cfg(not(feature = "redis"))]
    {
        Err(Error::Unsupported(format!(
            "the redis backend ({url}) is not built in: enable conveyor's \"redis\" feature"
        )))
    }
}

async fn open_postgres(url: &str) -> Result<Arc<dyn Backend>, Error> {
    #[cfg(feature = "postgres")]
    {
        let (url, schema) = take_param(url, "schema");
        let mut builder = conveyor_postgres::PostgresBackend::builder(&url);
        if let Some(schema) = schema {
            builder = builder.schema(&schema);
        }
        Ok(Arc::new(builder.connect().await?))
    }
    #[cfg(not(feature = "postgres"))]
    {
        Err(Error::Unsupported(format!(
            "the postgres backend ({url}) is not built in: enable conveyor's \"postgres\" feature"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::take_param;

    #[test]
    fn namespace_parameters_are_taken_out() {
        assert_eq!(
            take_param("redis://h:1/0?prefix=a:b", "prefix"),
            ("redis://h:1/0".to_string(), Some("a:b".to_string()))
        );
        assert_eq!(
            take_param("postgres://u@h/db?sslmode=disable&schema=s1", "schema"),
            (
                "postgres://u@h/db?sslmode=disable".to_string(),
                Some("s1".to_string())
            )
        );
        assert_eq!(
            take_param("postgres://u@h/db", "schema"),
            ("postgres://u@h/db".to_string(), None)
        );
    }
}
