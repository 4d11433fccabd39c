//! [`PostgresBackend`]: the durable contract on PostgreSQL tables.
//!
//! Each call is one statement (or three pipelined on one connection: promote
//! due tasks, check for handler limits, reserve), so there are no
//! multi-statement transactions on the hot path and no lock is held across a
//! round trip. While any handler has global limits, reserving is one short
//! transaction instead (`crate::limits`). Reserving picks rows with
//! `FOR NO KEY UPDATE SKIP LOCKED`, so concurrent workers never wait on each
//! other nor take the same task; reports are applied in one `UPDATE … FROM
//! unnest(…)` per batch, each only where the task is running under the report's
//! token (fencing). Times come from the injected clock, never from the server.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    async_trait, Administration, Backend, Capabilities, Clock, Count, Enqueued, Error, Finish,
    FinishAction, FinishMark, GlobalLimits, HandlerLimits, Inspection, Lease, ListOrder,
    ListParams, Maintenance, NewTask, Page, QueueStats, ReserveParams, Reserved, ResultStore,
    Retention, Search, TaskId, TaskRecord, TaskState, Timestamp, Transition, ValueLimit,
};
use deadpool_postgres::{Object, Pool};
use tokio_postgres::GenericClient;

use crate::builder::Builder;
use crate::counts::CountStatements;
use crate::error::{db, pool};
use crate::inspect;
use crate::limits::{self, LimitStatements};
use crate::listener::Listener;
use crate::migrate::{self, Migrated};
use crate::notifier::Notifier;
use crate::row::{self, col, param_id};
use crate::schema::Schema;
use crate::statements::{kind, Statements};
use crate::vacuum::Vacuum;

/// Rows changed per statement by `recover_expired` and `prune`, so maintenance
/// never holds locks on, or writes WAL for, an unbounded set at once.
const MAINTENANCE_BATCH: i64 = 5_000;

/// A durable backend on PostgreSQL. Cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct PostgresBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pool: Pool,
    /// Pooled connections found closed and replaced.
    replaced: Arc<AtomicU64>,
    pub(crate) schema: Schema,
    sql: Statements,
    pub(crate) counts: CountStatements,
    limits: LimitStatements,
    pub(crate) clock: Arc<dyn Clock>,
    listener: Listener,
    /// Wake-ups for `enqueue_many`, sent after its commit.
    notifier: Notifier,
    vacuum: Vacuum,
    /// The most bytes of params or result one task may carry.
    pub(crate) value_limit: ValueLimit,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.inner.schema.name())
            .field("pool", &self.inner.pool.status())
            .finish_non_exhaustive()
    }
}

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

    /// Enqueues `tasks` inside the caller's open transaction (or on the
    /// caller's connection): they exist, and wake workers, only if the caller
    /// commits. `client` must reach the database this backend uses; the tasks
    /// go to this backend's schema. Same semantics as
    /// [`Backend::enqueue_many`]; tasks with an ordering key hold a lock on
    /// their `(queue, key)` until the transaction ends, so other enqueuers of
    /// that key wait for it (reserving does not).
    pub async fn enqueue_in<C>(
        &self,
        client: &C,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<Enqueued>, Error>
    where
        C: GenericClient + Sync,
    {
        crate::enqueue::validate(&tasks)?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let client = client.client();
        let statement = client
            .prepare(&self.inner.sql.enqueue)
            .await
            .map_err(|e| db("enqueueing (preparing)", e))?;
        let now = self.inner.clock.now();
        let at = crate::enqueue::Target {
            client,
            statement: &statement,
            wakes: true,
            sql: &self.inner.sql,
            schema: &self.inner.schema,
            now,
        };
        crate::enqueue::enqueue(&at, &tasks).await
    }

    pub(crate) async fn conn(&self, what: &str) -> Result<Object, Error> {
        self.inner.pool.get().await.map_err(|e| pool(what, e))
    }

    pub(crate) async fn prepared(
        conn: &Object,
        what: &str,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, Error> {
        conn.prepare_cached(sql)
            .await
            .map_err(|e| db(&format!("{what} (preparing)"), e))
    }

    /// Runs a maintenance statement in batches until a batch comes back short.
    async fn batched(&self, what: &str, sql: &str, first: i64) -> Result<u64, Error> {
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, sql).await?;
        let mut total = 0;
        loop {
            let n = conn
                .execute(&stmt, &[&first, &MAINTENANCE_BATCH])
                .await
                .map_err(|e| db(what, e))?;
            total += n;
            if n < MAINTENANCE_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }
}

/// The arrays of one `finish` statement.
#[derive(Default)]
struct Reports {
    ids: Vec<i64>,
    tokens: Vec<i64>,
    kinds: Vec<i16>,
    results: Vec<Option<Vec<u8>>>,
    errors: Vec<Option<String>>,
    retry_at: Vec<i64>,
}

impl Reports {
    /// Adds the report of lease `(id, token)`.
    fn push(&mut self, (id, token): (i64, i64), action: FinishAction, now: Timestamp) {
        let (k, result, error, retry_at) = match action {
            FinishAction::Complete { result } => (kind::COMPLETE, result, None, 0),
            FinishAction::Retry { delay, error } => {
                (kind::RETRY, None, Some(error), now.plus(delay).as_millis())
            }
            FinishAction::DeadLetter { error } => (kind::DEAD_LETTER, None, Some(error), 0),
            FinishAction::Discard { reason } => (kind::DISCARD, None, Some(reason), 0),
            FinishAction::Release => (kind::RELEASE, None, None, 0),
        };
        self.ids.push(id);
        self.tokens.push(token);
        self.kinds.push(k);
        self.results.push(result);
        self.errors.push(error);
        self.retry_at.push(retry_at);
    }

    /// Runs the prepared finish statement; the leases it applied.
    async fn apply(
        &self,
        client: &tokio_postgres::Client,
        stmt: &tokio_postgres::Statement,
        now: Timestamp,
        [channel, finished]: [&str; 2],
    ) -> Result<HashSet<(i64, i64)>, Error> {
        let rows = client
            .query(
                stmt,
                &[
                    &self.ids,
                    &self.tokens,
                    &self.kinds,
                    &self.results,
                    &self.errors,
                    &self.retry_at,
                    &now.as_millis(),
                    &channel,
                    &finished,
                ],
            )
            .await
            .map_err(|e| db("finishing tasks", e))?;
        rows.iter()
            .map(|r| Ok((col(r, 0, "id")?, col(r, 1, "token")?)))
            .collect()
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    /// Two: reservations run side by side on pooled connections, so one
    /// is answered while the other waits on the server.
    fn reserves_in_flight(&self) -> usize {
        2
    }

    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        crate::enqueue::validate(&tasks)?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.value_limit.check_batch(&tasks)?;
        let what = "enqueueing";
        // Alone, the statement sends the wake-up at its commit, as a caller's
        // transaction does; beside other enqueues it leaves the wake-up to the
        // notifier, so their commits do not queue for the notification lock.
        let turn = self.inner.notifier.enter();
        let wakes = turn.alone();
        let sql = &self.inner.sql;
        let conn = self.conn(what).await?;
        let text = if wakes {
            &sql.enqueue
        } else {
            &sql.enqueue_quiet
        };
        let stmt = Self::prepared(&conn, what, text).await?;
        let now = self.inner.clock.now();
        let at = crate::enqueue::Target {
            client: &conn,
            statement: &stmt,
            wakes,
            sql,
            schema: &self.inner.schema,
            now,
        };
        let enqueued = crate::enqueue::enqueue(&at, &tasks).await?;
        drop(conn);
        if !wakes {
            // Committed: now the workers of the queues given work due now.
            let mut due: Vec<String> = tasks
                .iter()
                .filter(|t| t.first_run(now) <= now)
                .map(|t| t.queue.clone())
                .collect();
            due.dedup();
            self.inner.notifier.wake(due);
        }
        Ok(enqueued)
    }

    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        let (queues, max, lease, worker) = (params.queues, params.max, params.lease, params.worker);
        let what = "reserving";
        let now = self.inner.clock.now();
        let now_ms = now.as_millis();
        let until = now.plus(lease).as_millis();
        let mut conn = self.conn(what).await?;
        let promote = Self::prepared(&conn, what, &self.inner.sql.promote).await?;
        if let Some(handlers) = params.handlers {
            // Only some handlers: the scan that leaves handlers out, as the
            // limited way does (a worker asks for this only while its queues
            // hold tasks of handlers it lacks).
            conn.execute(&promote, &[&now_ms])
                .await
                .map_err(|e| db(what, e))?;
            return limits::reserve(
                &mut conn,
                &self.inner.limits,
                queues,
                max,
                (now, until),
                worker,
                Some(handlers),
            )
            .await;
        }
        let reserve = Self::prepared(&conn, what, &self.inner.sql.reserve).await?;
        let exists = Self::prepared(&conn, what, self.inner.limits.exists()).await?;
        let mut out = Vec::new();
        let mut limited = false;
        let mut promoted = false;
        for queue in queues {
            let left = max.saturating_sub(out.len());
            if left == 0 {
                break;
            }
            let limit = i64::try_from(left).unwrap_or(i64::MAX);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                [queue, &limit, &until, &worker, &now_ms];
            let rows = if promoted {
                conn.query(&reserve, &params)
                    .await
                    .map_err(|e| db(what, e))?
            } else {
                // Pipelined: all three go out at once and run in order, each in
                // its own implicit transaction, so the reserve sees the
                // promotion. The reserve takes nothing while any handler has
                // limits (its gate); the check says whether to go the limited way.
                promoted = true;
                let promote_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&now_ms];
                let (_, gate, rows) = tokio::try_join!(
                    conn.execute(&promote, &promote_params),
                    conn.query_one(&exists, &[]),
                    conn.query(&reserve, &params)
                )
                .map_err(|e| db(what, e))?;
                limited = col(&gate, 0, "exists")?;
                rows
            };
            let mut got = rows
                .iter()
                .map(row::reserved)
                .collect::<Result<Vec<_>, _>>()?;
            got.sort_by_key(|(priority, r)| (std::cmp::Reverse(*priority), r.lease.id));
            out.extend(got.into_iter().map(|(_, r)| r));
            if limited {
                break;
            }
        }
        if !promoted {
            conn.execute(&promote, &[&now_ms])
                .await
                .map_err(|e| db(what, e))?;
        }
        if limited && out.len() < max {
            let more = limits::reserve(
                &mut conn,
                &self.inner.limits,
                queues,
                max - out.len(),
                (now, until),
                worker,
                None,
            )
            .await?;
            out.extend(more);
        }
        Ok(out)
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        let what = "renewing leases";
        let until = self.inner.clock.now().plus(lease).as_millis();
        let mut ids = Vec::with_capacity(leases.len());
        let mut tokens = Vec::with_capacity(leases.len());
        for l in leases {
            if let (Some(id), Ok(token)) = (param_id(l.id), i64::try_from(l.token)) {
                ids.push(id);
                tokens.push(token);
            }
        }
        if ids.is_empty() {
            return Ok(vec![false; leases.len()]);
        }
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, &self.inner.sql.renew).await?;
        let rows = conn
            .query(&stmt, &[&ids, &tokens, &until])
            .await
            .map_err(|e| db(what, e))?;
        let mut held = HashSet::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = col(r, 0, "id")?;
            let token: i64 = col(r, 1, "token")?;
            held.insert((id, token));
        }
        Ok(leases
            .iter()
            .map(|l| match (param_id(l.id), i64::try_from(l.token)) {
                (Some(id), Ok(token)) => held.contains(&(id, token)),
                _ => false,
            })
            .collect())
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        let what = "finishing tasks";
        let now = self.inner.clock.now();
        let mut batch = Reports::default();
        // Per report: the (id, token) it was sent as, or the answer it gets
        // without being sent (an impossible id or a repeat of a lease already
        // in the batch: stale; a follow-up this store cannot hold: invalid).
        let mut sent: Vec<Result<(i64, i64), Error>> = Vec::with_capacity(reports.len());
        let mut seen = HashSet::with_capacity(reports.len());
        // Follow-ups, by the report they come with.
        let mut follow: Vec<((i64, i64), Vec<NewTask>)> = Vec::new();
        let ids: Vec<TaskId> = reports.iter().map(|r| r.lease.id).collect();
        let sizes = self.inner.value_limit.check_finishes(&reports);
        for (r, size) in reports.into_iter().zip(sizes) {
            if let Err(e) = size {
                sent.push(Err(e));
                continue;
            }
            let key = match (param_id(r.lease.id), i64::try_from(r.lease.token)) {
                (Some(id), Ok(token)) if seen.insert((id, token)) => (id, token),
                _ => {
                    sent.push(Err(Error::StaleLease(r.lease.id)));
                    continue;
                }
            };
            if let Err(e) = crate::enqueue::validate(&r.follow_ups) {
                sent.push(Err(e));
                continue;
            }
            if !r.follow_ups.is_empty() {
                follow.push((key, r.follow_ups));
            }
            batch.push(key, r.action, now);
            sent.push(Ok(key));
        }
        let mut applied = HashSet::new();
        if !batch.ids.is_empty() {
            let mut conn = self.conn(what).await?;
            let channel = self.inner.schema.channel();
            let finished = self.inner.schema.finished_channel();
            let channels = [channel.as_str(), finished.as_str()];
            if follow.is_empty() {
                // The hot path: one statement, no transaction.
                let stmt = Self::prepared(&conn, what, &self.inner.sql.finish).await?;
                applied = batch.apply(&conn, &stmt, now, channels).await?;
            } else {
                // Reports and the follow-ups of those applied, in one
                // transaction: both or neither.
                let tx = conn.transaction().await.map_err(|e| db(what, e))?;
                let stmt = tx
                    .prepare_cached(&self.inner.sql.finish)
                    .await
                    .map_err(|e| db(&format!("{what} (preparing)"), e))?;
                applied = batch.apply(tx.client(), &stmt, now, channels).await?;
                let tasks: Vec<NewTask> = follow
                    .into_iter()
                    .filter(|(key, _)| applied.contains(key))
                    .flat_map(|(_, tasks)| tasks)
                    .collect();
                if !tasks.is_empty() {
                    let what = "enqueueing follow-ups";
                    let statement = tx
                        .prepare_cached(&self.inner.sql.enqueue)
                        .await
                        .map_err(|e| db(&format!("{what} (preparing)"), e))?;
                    let at = crate::enqueue::Target {
                        client: tx.client(),
                        statement: &statement,
                        wakes: true,
                        sql: &self.inner.sql,
                        schema: &self.inner.schema,
                        now,
                    };
                    crate::enqueue::enqueue(&at, &tasks).await?;
                }
                tx.commit().await.map_err(|e| db(what, e))?;
            }
        }
        Ok(sent
            .into_iter()
            .zip(ids)
            .map(|(key, id)| match key {
                Ok(key) if applied.contains(&key) => Ok(()),
                Ok(_) => Err(Error::StaleLease(id)),
                Err(e) => Err(e),
            })
            .collect())
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        self.inner.listener.wait(queues, timeout).await;
        true
    }

    /// Pooled connections found closed and replaced, and the notification
    /// connection's reconnections.
    fn reconnects(&self) -> Option<u64> {
        Some(self.inner.replaced.load(Ordering::Relaxed) + self.inner.listener.reconnects())
    }

    conveyor_core::own_parts!(all);
}

#[async_trait]
impl ResultStore for PostgresBackend {
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        let what = "reading a task";
        let Some(pid) = param_id(id) else {
            return Ok(None);
        };
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, &self.inner.sql.get).await?;
        let row = conn
            .query_opt(&stmt, &[&pid])
            .await
            .map_err(|e| db(what, e))?;
        row.as_ref().map(row::record).transpose()
    }

    async fn finish_mark(&self) -> Option<FinishMark> {
        self.inner.listener.finish_mark()
    }

    /// Woken by the `NOTIFY` each finishing statement sends on the schema's
    /// `<schema>_finished` channel, heard on the backend's LISTEN connection.
    async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) -> bool {
        self.inner.listener.wait_finished(id, since, timeout).await
    }
}

#[async_trait]
impl Inspection for PostgresBackend {
    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        self.kept_stats().await
    }

    async fn page(&self, params: &ListParams, search: Option<&Search>) -> Result<Page, Error> {
        self.search_page(params, search).await
    }

    async fn count(&self, params: &ListParams, search: Option<&Search>) -> Result<Count, Error> {
        self.search_count(params, search).await
    }

    async fn list(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        // A state rare enough for its own index is read through it; a
        // common one along the primary key, where its rows are met often.
        // (A listing has no budget: every task it asks for comes back.)
        let conn = self.conn("listing tasks").await?;
        if let Some(page) = self.index_page(&conn, params, None).await? {
            return Ok(page.tasks);
        }
        self.list_by_id(&conn, params).await
    }
}

impl PostgresBackend {
    /// Tasks `params` lists, along the primary key from its cursor.
    async fn list_by_id(
        &self,
        conn: &Object,
        params: &ListParams,
    ) -> Result<Vec<TaskRecord>, Error> {
        let what = "listing tasks";
        // Codes are 0..=6: the cast cannot truncate.
        let code = params.state.code() as i16;
        let limit = i64::try_from(params.limit).unwrap_or(i64::MAX);
        let after = params.id_bound();
        let text = match params.order {
            ListOrder::NewestFirst => &self.inner.sql.list_newest,
            _ => &self.inner.sql.list_oldest,
        };
        let stmt = Self::prepared(conn, what, text).await?;
        let rows = conn
            .query(
                &stmt,
                &[&code, &params.queue, &limit, &params.handler, &after],
            )
            .await
            .map_err(|e| db(what, e))?;
        rows.iter().map(row::record).collect()
    }
}

#[async_trait]
impl Administration for PostgresBackend {
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        let what = "cancelling";
        let Some(pid) = param_id(id) else {
            return Err(Error::NotFound(id));
        };
        let conn = self.conn(what).await?;
        let cancel = Self::prepared(&conn, what, &self.inner.sql.cancel).await?;
        let state_of = Self::prepared(&conn, what, &self.inner.sql.state_of).await?;
        let finished = self.inner.schema.finished_channel();
        // A task that became cancellable again between the two statements
        // (requeued, released) is tried again; a few rounds settle any race.
        for _ in 0..5 {
            let now = self.inner.clock.now().as_millis();
            let cancel_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&pid, &now, &finished];
            let state_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&pid];
            let (updated, current) = tokio::try_join!(
                conn.query_opt(&cancel, &cancel_params),
                conn.query_opt(&state_of, &state_params)
            )
            .map_err(|e| db(what, e))?;
            if updated.is_some() {
                return Ok(Transition::Cancel.target());
            }
            let Some(current) = current else {
                return Err(Error::NotFound(id));
            };
            let state = row::state(id, col(&current, 0, "state")?)?;
            if Transition::Cancel.apply(state).is_err() {
                return Ok(state);
            }
        }
        Err(Error::backend_other(format!(
            "postgres: cancelling task {id}: its state kept changing; try again"
        )))
    }

    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        let what = "requeueing dead tasks";
        let ids: Vec<i64> = ids.iter().filter_map(|&id| param_id(id)).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let now = self.inner.clock.now().as_millis();
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, &self.inner.sql.requeue).await?;
        let channel = self.inner.schema.channel();
        let row = conn
            .query_one(&stmt, &[&ids, &now, &channel])
            .await
            .map_err(|e| db(what, e))?;
        let n: i64 = col(&row, 0, "count")?;
        Ok(n.unsigned_abs())
    }

    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        let what = "purging dead tasks";
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, &self.inner.sql.purge).await?;
        conn.execute(&stmt, &[&queue])
            .await
            .map_err(|e| db(what, e))
    }
}

#[async_trait]
impl Maintenance for PostgresBackend {
    async fn recover_expired(&self) -> Result<u64, Error> {
        let what = "recovering expired leases";
        let now = self.inner.clock.now().as_millis();
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, &self.inner.sql.recover).await?;
        let channel = self.inner.schema.channel();
        let finished = self.inner.schema.finished_channel();
        let mut total = 0u64;
        loop {
            let row = conn
                .query_one(&stmt, &[&now, &MAINTENANCE_BATCH, &channel, &finished])
                .await
                .map_err(|e| db(what, e))?;
            let n: i64 = col(&row, 0, "count")?;
            total += n.unsigned_abs();
            if n < MAINTENANCE_BATCH {
                break;
            }
        }
        inspect::compact(&conn, &self.inner.counts).await?;
        self.inner.vacuum.maybe_run(&conn, &self.inner.schema).await;
        Ok(total)
    }

    async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        let now = self.inner.clock.now();
        let finished = self
            .batched(
                "pruning finished tasks",
                &self.inner.sql.prune_finished,
                now.minus(retention.finished).as_millis(),
            )
            .await?;
        let dead = self
            .batched(
                "pruning dead tasks",
                &self.inner.sql.prune_dead,
                now.minus(retention.dead).as_millis(),
            )
            .await?;
        Ok(finished + dead)
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let what = "taking the lead";
        let now = self.inner.clock.now();
        let conn = self.conn(what).await?;
        // The upsert changes the row only when the role is free, ours, or its
        // term has run out; the row lock makes concurrent callers take turns.
        let sql = format!(
            "INSERT INTO {leaders} (role, holder, until) VALUES ($1, $2, $3)
             ON CONFLICT (role) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
             WHERE {leaders}.holder = EXCLUDED.holder OR {leaders}.until <= $4",
            leaders = self.inner.schema.table("leaders"),
        );
        let stmt = Self::prepared(&conn, what, &sql).await?;
        let changed = conn
            .execute(
                &stmt,
                &[&role, &holder, &now.plus(ttl).as_millis(), &now.as_millis()],
            )
            .await
            .map_err(|e| db(what, e))?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl GlobalLimits for PostgresBackend {
    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        limits.validate()?;
        let conn = self.conn("storing handler limits").await?;
        limits::set(&conn, &self.inner.limits, handler, limits).await
    }

    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        let conn = self.conn("reading handler limits").await?;
        limits::list(&conn, &self.inner.limits).await
    }
}
