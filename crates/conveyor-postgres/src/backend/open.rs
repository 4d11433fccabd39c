//! Opening a backend: connecting (through the [`Builder`]), the parts the
//! builder assembled, what the backend was opened with (its schema, the most
//! bytes a value may hold), and its schema's lifecycle: migrating, reading
//! the version, dropping it; and a ping.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Clock, Error, ValueLimit};
use deadpool_postgres::Pool;

use super::{Inner, PostgresBackend};
use crate::builder::Builder;
use crate::counts::CountStatements;
use crate::error::db;
use crate::limits::LimitStatements;
use crate::listener::Listener;
use crate::migrate::{self, Migrated};
use crate::notifier::Notifier;
use crate::schema::Schema;
use crate::statements::Statements;
use crate::vacuum::Vacuum;

impl PostgresBackend {
    /// Connects to `url` (a `postgres://` URL or `key=value` string), using the
    /// `conveyor` schema and the system clock, and migrates it.
    pub async fn connect(url: &str) -> Result<PostgresBackend, Error> {
        Builder::new(url).connect().await
    }

    /// Connects with every table in `schema`, reading time from `clock`, and
    /// migrates that schema.
    pub async fn connect_with(
        url: &str,
        schema: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<PostgresBackend, Error> {
        Builder::new(url)
            .schema(schema)
            .clock(clock)
            .connect()
            .await
    }

    /// Options beyond [`connect_with`](Self::connect_with): pool size, migrating
    /// on connect.
    pub fn builder(url: &str) -> Builder {
        Builder::new(url)
    }

    #[allow(clippy::too_many_arguments)] // the parts the builder assembled
    pub(crate) fn from_parts(
        pool: Pool,
        replaced: Arc<AtomicU64>,
        config: tokio_postgres::Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
        schema: Schema,
        clock: Arc<dyn Clock>,
        vacuum_every: Option<Duration>,
        value_limit: ValueLimit,
    ) -> Self {
        let sql = Statements::new(&schema);
        let counts = CountStatements::new(&schema);
        let limits = LimitStatements::new(&schema);
        let workflow_sql = crate::workflows::WorkflowStatements::new(&schema);
        let listener = Listener::new(config, tls, schema.channel(), schema.finished_channel());
        let notifier = Notifier::new(pool.clone(), schema.channel());
        Self {
            inner: Arc::new(Inner {
                pool,
                replaced,
                schema,
                sql,
                counts,
                limits,
                clock,
                listener,
                notifier,
                vacuum: Vacuum::new(vacuum_every),
                value_limit,
                workflow_sql,
                graphs: conveyor_core::workflow::Graphs::default(),
            }),
        }
    }

    /// The most bytes one task's params, or one result, may hold here:
    /// PostgreSQL's limit for one field and one message (1 GiB) less room
    /// for the rest of a call, or less ([`Builder::max_value`]). `enqueue`
    /// refuses params over it, and `finish` a result over it, for that
    /// report alone, with a non-transient error naming both sizes.
    pub fn max_value(&self) -> usize {
        self.inner.value_limit.max()
    }

    /// The schema holding this backend's tables.
    pub fn schema(&self) -> &str {
        self.inner.schema.name()
    }

    /// Creates the schema and applies pending migrations (safe to run from
    /// several processes at once, and again: it does nothing when up to date).
    pub async fn migrate(&self) -> Result<Migrated, Error> {
        let mut conn = self.conn("migrating").await?;
        let now = self.inner.clock.now();
        migrate::migrate(&mut conn, &self.inner.schema, now).await
    }

    /// The schema's version (`None`: never migrated, or absent); reads only.
    pub async fn schema_version(&self) -> Result<Option<i32>, Error> {
        let conn = self.conn("reading the schema version").await?;
        migrate::version(&conn, &self.inner.schema).await
    }

    /// Drops this backend's schema and everything in it (`DROP SCHEMA …
    /// CASCADE`): for tests and benchmarks that made a schema of their own.
    /// The backend has no tables afterwards until [`migrate`](Self::migrate)
    /// runs again.
    pub async fn drop_schema(&self) -> Result<(), Error> {
        let conn = self.conn("dropping the schema").await?;
        conn.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.inner.schema.quoted()
        ))
        .await
        .map_err(|e| db("dropping the schema", e))
    }

    /// Checks that a connection can be had and the server answers.
    pub async fn ping(&self) -> Result<(), Error> {
        let conn = self.conn("pinging").await?;
        conn.simple_query("").await.map_err(|e| db("pinging", e))?;
        Ok(())
    }
}
