//! A fresh backend for each measurement, in a namespace of its own that is
//! dropped afterwards: a new file, a Redis key prefix, a PostgreSQL schema or
//! a RabbitMQ or NATS prefix.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use conveyor::durable::{
    connect, AmqpBackend, AmqpOptions, Backend, NatsBackend, PostgresBackend, RedisBackend,
    DEFAULT_QUEUE_NAME,
};
use conveyor::SystemClock;

/// A fresh backend for one measurement: for an embedded URL (or none) a new
/// file in the temp directory, for Redis a new key prefix (`?prefix=`), for
/// PostgreSQL a new schema (`?schema=`); dropped by [`Subject::close`] (and
/// files also on drop), so no measurement sees another's tasks.
pub struct Subject {
    /// The URL that opens the namespace.
    pub url: String,
    namespace: Namespace,
}

enum Namespace {
    File(std::path::PathBuf),
    Redis { base: String, prefix: String },
    Postgres { base: String, schema: String },
    Amqp { base: String, prefix: String },
    Nats { base: String, prefix: String },
    Other,
}

fn scheme(url: &str) -> String {
    url.split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={value}")
}

impl Subject {
    /// A new namespace on `url` (none: an embedded file), named with `tag`.
    pub fn new(url: Option<&str>, tag: &str) -> Subject {
        let unique = unique(tag, '_');
        match url {
            Some(u) if scheme(u).starts_with("redis") => {
                let prefix = format!("conveyor-bench-{unique}:");
                Subject {
                    url: with_param(u, "prefix", &prefix),
                    namespace: Namespace::Redis {
                        base: u.to_string(),
                        prefix,
                    },
                }
            }
            Some(u) if scheme(u).starts_with("postgres") => {
                let schema = format!("conveyor_bench_{unique}");
                Subject {
                    url: with_param(u, "schema", &schema),
                    namespace: Namespace::Postgres {
                        base: u.to_string(),
                        schema,
                    },
                }
            }
            Some(u) if scheme(u).starts_with("amqp") => {
                let prefix = format!("conveyor-bench-{unique}");
                Subject {
                    url: with_param(u, "prefix", &prefix),
                    namespace: Namespace::Amqp {
                        base: u.to_string(),
                        prefix,
                    },
                }
            }
            Some(u) if scheme(u) == "nats" || scheme(u) == "tls" => {
                let prefix = format!("cvb{}", unique.replace('_', ""));
                Subject {
                    url: with_param(u, "prefix", &prefix),
                    namespace: Namespace::Nats {
                        base: u.to_string(),
                        prefix,
                    },
                }
            }
            Some(u) if !matches!(scheme(u).as_str(), "" | "embedded" | "sqlite" | "file") => {
                Subject {
                    url: u.to_string(),
                    namespace: Namespace::Other,
                }
            }
            _ => {
                let path = std::env::temp_dir().join(format!("conveyor-bench-{unique}.db"));
                remove_db(&path);
                Subject {
                    url: format!("embedded://{}", path.display()),
                    namespace: Namespace::File(path),
                }
            }
        }
    }

    /// The Redis namespace `prefix` on `url` (a cluster's prefix carries
    /// its hash tag).
    pub fn redis(url: &str, prefix: &str) -> Subject {
        Subject {
            url: with_param(url, "prefix", prefix),
            namespace: Namespace::Redis {
                base: url.to_string(),
                prefix: prefix.to_string(),
            },
        }
    }

    /// The file of an embedded namespace.
    pub fn file(&self) -> Option<&std::path::Path> {
        match &self.namespace {
            Namespace::File(path) => Some(path),
            _ => None,
        }
    }

    /// The server URL and schema of a PostgreSQL namespace.
    pub fn postgres(&self) -> Option<(&str, &str)> {
        match &self.namespace {
            Namespace::Postgres { base, schema } => Some((base, schema)),
            _ => None,
        }
    }

    /// The backend kind of `url`, from a namespace opened and dropped.
    pub async fn kind(self) -> &'static str {
        let kind = self.open().await.kind();
        self.close().await;
        kind
    }

    /// Opens the backend (exits the benchmark when it cannot).
    pub async fn open(&self) -> Arc<dyn Backend> {
        match connect(&self.url).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cannot open {}: {e}", self.url);
                std::process::exit(2);
            }
        }
    }

    /// Drops the measurement's namespace (key prefix, schema or file).
    pub async fn close(self) {
        let dropped = match &self.namespace {
            Namespace::Redis { base, prefix } => {
                let base = base.split('?').next().unwrap_or(base);
                match RedisBackend::connect_with(base, prefix, Arc::new(SystemClock)).await {
                    Ok(b) => b.clear().await.map(|_| ()),
                    Err(e) => Err(e),
                }
            }
            Namespace::Postgres { base, schema } => {
                match PostgresBackend::builder(base)
                    .schema(schema)
                    .migrate(false)
                    .connect()
                    .await
                {
                    Ok(b) => b.drop_schema().await,
                    Err(e) => Err(e),
                }
            }
            Namespace::Amqp { base, prefix } => {
                let base = base.split('?').next().unwrap_or(base);
                let options = AmqpOptions::default().prefix(prefix.as_str());
                match AmqpBackend::connect(base, options, Arc::new(SystemClock)).await {
                    Ok(b) => {
                        let dropped = b.delete_namespace(&[DEFAULT_QUEUE_NAME]).await;
                        b.close().await;
                        dropped
                    }
                    Err(e) => Err(e),
                }
            }
            Namespace::Nats { base, prefix } => {
                let base = base.split('?').next().unwrap_or(base);
                match NatsBackend::connect_with(base, prefix, Arc::new(SystemClock)).await {
                    Ok(b) => b.destroy().await,
                    Err(e) => Err(e),
                }
            }
            Namespace::File(_) | Namespace::Other => Ok(()),
        };
        if let Err(e) = dropped {
            eprintln!(
                "could not drop the benchmark namespace of {}: {e}",
                self.url
            );
        }
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        if let Namespace::File(p) = &self.namespace {
            remove_db(p);
        }
    }
}

/// Removes an SQLite file and its WAL and shared-memory files.
pub fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// A name no other run uses: `tag`, this process's id and the clock's
/// microseconds (hex, lower 32 bits), joined by `sep`.
pub fn unique(tag: &str, sep: char) -> String {
    format!(
        "{tag}{sep}{}{sep}{:x}",
        std::process::id(),
        micros_now() & 0xffff_ffff
    )
}

/// Microseconds since the Unix epoch.
pub fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
