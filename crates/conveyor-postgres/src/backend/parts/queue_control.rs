//! Paused queues in the schema: the `paused_queues` table (migration 5), one
//! row per paused queue.
//!
//! Every reserve statement (the fast one and the one under handler limits)
//! checks its queue against the table. Under READ COMMITTED each statement
//! reads a snapshot taken when it starts, so a reservation that begins after
//! a pause committed never takes the queue's tasks, whichever connection or
//! process reserves. Resuming sends the queue's wake-up on the schema's
//! channel in the same statement (delivered at commit), so waiting workers
//! look again at once.

use conveyor_core::{async_trait, validate_queue_name, Error, QueueControl};

use crate::backend::PostgresBackend;
use crate::error::db;
use crate::row::col;
use crate::statements::NOTIFY_QUEUE_CHARS;

#[async_trait]
impl QueueControl for PostgresBackend {
    async fn pause(&self, queue: &str) -> Result<bool, Error> {
        validate_queue_name(queue)?;
        let what = "pausing a queue";
        let conn = self.conn(what).await?;
        let sql = format!(
            "INSERT INTO {p} (queue) VALUES ($1) ON CONFLICT (queue) DO NOTHING",
            p = self.inner.schema.table("paused_queues"),
        );
        let stmt = Self::prepared(&conn, what, &sql).await?;
        let n = conn
            .execute(&stmt, &[&queue])
            .await
            .map_err(|e| db(what, e))?;
        Ok(n > 0)
    }

    async fn resume(&self, queue: &str) -> Result<bool, Error> {
        validate_queue_name(queue)?;
        let what = "resuming a queue";
        let conn = self.conn(what).await?;
        let sql = format!(
            "WITH gone AS (DELETE FROM {p} WHERE queue = $1 RETURNING queue)
             SELECT count(*), count(pg_notify($2, left(queue, {NOTIFY_QUEUE_CHARS}))) FROM gone",
            p = self.inner.schema.table("paused_queues"),
        );
        let stmt = Self::prepared(&conn, what, &sql).await?;
        let channel = self.inner.schema.channel();
        let row = conn
            .query_one(&stmt, &[&queue, &channel])
            .await
            .map_err(|e| db(what, e))?;
        let n: i64 = col(&row, 0, "count")?;
        Ok(n > 0)
    }

    async fn paused(&self) -> Result<Vec<String>, Error> {
        let what = "listing paused queues";
        let conn = self.conn(what).await?;
        let sql = format!(
            "SELECT queue FROM {p} ORDER BY queue COLLATE \"C\"",
            p = self.inner.schema.table("paused_queues"),
        );
        let stmt = Self::prepared(&conn, what, &sql).await?;
        let rows = conn.query(&stmt, &[]).await.map_err(|e| db(what, e))?;
        rows.iter().map(|r| col(r, 0, "queue")).collect()
    }
}
