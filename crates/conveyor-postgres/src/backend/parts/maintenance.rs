//! Maintenance: expired leases recovered (then the kept counts folded and the
//! table vacuumed when due), old tasks pruned, both in bounded batches; and
//! the lead of a role.

use std::time::Duration;

use conveyor_core::{async_trait, Error, Maintenance, Retention};

use crate::backend::PostgresBackend;
use crate::error::db;
use crate::inspect;
use crate::row::col;

/// Rows changed per statement by `recover_expired` and `prune`, so maintenance
/// never holds locks on, or writes WAL for, an unbounded set at once.
const MAINTENANCE_BATCH: i64 = 5_000;

impl PostgresBackend {
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
        drop(conn);
        // Node tasks whose ends were recorded and not settled: ended just
        // now, or left by a process that died before settling them.
        self.settle_ended(None).await?;
        let conn = self.conn(what).await?;
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
        let expired = self
            .batched(
                "pruning expired tasks",
                &self.inner.sql.prune_expired,
                now.as_millis(),
            )
            .await?;
        self.prune_workflows(retention).await?;
        Ok(finished + dead + expired)
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
