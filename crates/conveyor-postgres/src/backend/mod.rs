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
//!
//! This file holds the handle, what it is made of, its pooled connections
//! and the [`Backend`] implementation; each duty has a file of its own:
//!
//! - `open`: connecting (through the [`Builder`](crate::Builder)), what the
//!   backend was opened with, and its schema's lifecycle (migrate, version,
//!   drop, ping);
//! - `enqueue`: `enqueue_many`, and [`PostgresBackend::enqueue_in`] inside the
//!   caller's transaction;
//! - `reserve`, `renew` and `finish`: the rest of the contract's core;
//! - `parts`: the optional parts, every one of them (`own_parts!(all)`).

mod enqueue;
mod finish;
mod open;
mod parts;
mod renew;
mod reserve;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    async_trait, Backend, Capabilities, Clock, Enqueued, Error, Finish, Lease, NewTask,
    ReserveParams, Reserved, ValueLimit,
};
use deadpool_postgres::{Object, Pool};

use crate::counts::CountStatements;
use crate::error::{db, pool};
use crate::limits::LimitStatements;
use crate::listener::Listener;
use crate::notifier::Notifier;
use crate::schema::Schema;
use crate::statements::Statements;
use crate::vacuum::Vacuum;

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
    pub(crate) sql: Statements,
    pub(crate) counts: CountStatements,
    limits: LimitStatements,
    pub(crate) clock: Arc<dyn Clock>,
    listener: Listener,
    /// Wake-ups for `enqueue_many`, sent after its commit.
    notifier: Notifier,
    vacuum: Vacuum,
    /// The most bytes of params or result one task may carry.
    pub(crate) value_limit: ValueLimit,
    /// The workflows part's statements.
    pub(crate) workflow_sql: crate::workflows::WorkflowStatements,
    /// Workflows' graphs read back.
    pub(crate) graphs: conveyor_core::workflow::Graphs,
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
}

#[async_trait]
impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            failover: crate::FAILOVER,
            ..Capabilities::ALL
        }
    }

    /// Two: reservations run side by side on pooled connections, so one
    /// is answered while the other waits on the server.
    fn reserves_in_flight(&self) -> usize {
        2
    }

    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        self.enqueue_tasks(tasks).await
    }

    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        self.reserve_tasks(params).await
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        self.renew_leases(leases, lease).await
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        self.finish_reports(reports).await
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
    conveyor_core::own_parts!(workflows, schedules);
}
