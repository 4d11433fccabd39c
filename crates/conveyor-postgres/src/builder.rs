//! Connecting: the connection string, the schema, the clock, the pool size and
//! whether to migrate on connect.
//!
//! Connections come from a small `deadpool-postgres` pool whose recycling drops
//! any connection the server closed, so after a PostgreSQL restart the next
//! calls reconnect by themselves (calls made while the server is down fail
//! with [`Error::Backend`] after the connect timeout, and never hang).

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Clock, Error, SystemClock};
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use tokio_postgres::config::TargetSessionAttrs;

use crate::backend::PostgresBackend;
use crate::schema::{Schema, DEFAULT_SCHEMA};

/// Connections a backend keeps unless told otherwise: enough for a worker's
/// fetcher, completer, lease keeper and maintenance to run side by side.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How often `recover_expired` may vacuum the tasks table unless told otherwise.
pub const DEFAULT_VACUUM_EVERY: Duration = Duration::from_secs(2);

/// How long opening one connection may take unless the URL says otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Options for [`PostgresBackend`]; start with [`PostgresBackend::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    url: String,
    schema: String,
    clock: Arc<dyn Clock>,
    pool_size: usize,
    migrate: bool,
    vacuum_every: Option<Duration>,
    max_value: Option<usize>,
}

impl Builder {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            schema: DEFAULT_SCHEMA.to_string(),
            clock: Arc::new(SystemClock),
            pool_size: DEFAULT_POOL_SIZE,
            migrate: true,
            vacuum_every: Some(DEFAULT_VACUUM_EVERY),
            max_value: None,
        }
    }

    /// Refuses params and results over `cap` bytes (a URL's `max_value=`),
    /// below PostgreSQL's own limit ([`PostgresBackend::max_value`]).
    pub fn max_value(mut self, cap: usize) -> Self {
        self.max_value = Some(cap);
        self
    }

    /// The schema holding the tables (default `conveyor`).
    pub fn schema(mut self, schema: &str) -> Self {
        self.schema = schema.to_string();
        self
    }

    /// Where "now" comes from (default the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The most connections held at once (at least 1; default 8). The
    /// LISTEN connection of [`Backend::wait_for_work`](conveyor_core::Backend)
    /// comes on top.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Whether connecting applies pending migrations (default true). Turn it off
    /// where the schema is migrated by a separate step (`conveyor migrate`).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// How often [`Maintenance::recover_expired`](conveyor_core::Maintenance::recover_expired) may also
    /// `VACUUM` the tasks table when dead rows have piled up (default every 2 s;
    /// `None` leaves it to autovacuum). Reserving slows down with every task
    /// reserved since the last vacuum, so a busy queue needs this; see
    /// `docs/postgres.md`.
    pub fn vacuum_every(mut self, every: Option<Duration>) -> Self {
        self.vacuum_every = every;
        self
    }

    /// Connects (one connection, to check the URL and the server), migrates
    /// unless turned off, and returns the backend.
    pub async fn connect(self) -> Result<PostgresBackend, Error> {
        let schema = Schema::new(&self.schema)?;
        let (url, tls) = crate::tls::split(&self.url)?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| Error::InvalidConfig(format!("postgres connection string: {e}")))?;
        config.ssl_mode(tls.driver_mode());
        let connector = crate::tls::connector(&tls)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("conveyor");
        }
        // Every session writes: with several hosts, connect to the one that
        // takes writes (a failover's promoted standby), unless told
        // otherwise.
        if config.get_hosts().len() > 1 && !self.url.contains("target_session_attrs") {
            config.target_session_attrs(TargetSessionAttrs::ReadWrite);
        }
        let manager = Manager::from_config(
            config.clone(),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let create = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        // A pooled connection found closed at checkout is dropped and a new
        // one opened in its place: a reconnect. So is one opened before a
        // server refused a write as read-only (`crate::read_only`).
        let replaced = Arc::new(AtomicU64::new(0));
        let seen = replaced.clone();
        let pool = Pool::builder(manager)
            .pre_recycle(Hook::sync_fn(move |client, metrics| {
                if client.is_closed() {
                    seen.fetch_add(1, Ordering::Relaxed);
                } else if crate::read_only::spent(metrics.created) {
                    seen.fetch_add(1, Ordering::Relaxed);
                    return Err(HookError::message("opened before a read-only refusal"));
                }
                Ok(())
            }))
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(create))
            .wait_timeout(Some(create * 2))
            .recycle_timeout(Some(create))
            .build()
            .map_err(|e| Error::InvalidConfig(format!("postgres connection pool: {e}")))?;
        let backend = PostgresBackend::from_parts(
            pool,
            replaced,
            config,
            connector,
            schema,
            self.clock,
            self.vacuum_every,
            crate::value_limit::limit().lowered(self.max_value),
        );
        if self.migrate {
            backend.migrate().await?;
        } else {
            // Still check that the server answers, so a bad URL fails here.
            backend.ping().await?;
        }
        Ok(backend)
    }
}
