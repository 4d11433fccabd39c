//! The worker registry in the schema: the `workers` table (migration 4), one
//! row per worker with its latest heartbeat as JSON.

use conveyor_core::async_trait;
use conveyor_core::{Error, Registry, Timestamp, WorkerInfo};

use crate::backend::PostgresBackend;
use crate::error::db;

#[async_trait]
impl Registry for PostgresBackend {
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), Error> {
        let what = "recording a worker's heartbeat";
        let conn = self.conn(what).await?;
        let sql = format!(
            "INSERT INTO {w} (id, heartbeat_at, info) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,
                                            info = EXCLUDED.info",
            w = self.inner.schema.table("workers"),
        );
        let stmt = Self::prepared(&conn, what, &sql).await?;
        conn.execute(
            &stmt,
            &[
                &worker.id,
                &worker.heartbeat_at.as_millis(),
                &worker.to_json(),
            ],
        )
        .await
        .map_err(|e| db(what, e))?;
        Ok(())
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>, Error> {
        let what = "listing workers";
        let conn = self.conn(what).await?;
        let sql = format!(
            "SELECT info FROM {w} WHERE heartbeat_at >= $1 ORDER BY heartbeat_at DESC, id",
            w = self.inner.schema.table("workers"),
        );
        let stmt = Self::prepared(&conn, what, &sql).await?;
        let rows = conn
            .query(&stmt, &[&since.as_millis()])
            .await
            .map_err(|e| db(what, e))?;
        rows.iter()
            .map(|row| {
                let info: String = row.try_get(0).map_err(|e| db(what, e))?;
                WorkerInfo::from_json(&info)
            })
            .collect()
    }

    async fn forget_workers(&self, before: Timestamp) -> Result<u64, Error> {
        let what = "forgetting old workers";
        let conn = self.conn(what).await?;
        let sql = format!(
            "DELETE FROM {w} WHERE heartbeat_at < $1",
            w = self.inner.schema.table("workers"),
        );
        let stmt = Self::prepared(&conn, what, &sql).await?;
        conn.execute(&stmt, &[&before.as_millis()])
            .await
            .map_err(|e| db(what, e))
    }
}
