//! Administration: cancelling a waiting task, requeueing and purging dead
//! ones.

use conveyor_core::{async_trait, Administration, Error, TaskId, TaskState, Transition};

use crate::backend::PostgresBackend;
use crate::error::db;
use crate::row::{self, col, param_id};

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
            if let Some(row) = updated {
                if col(&row, 2, "node")? {
                    drop(conn);
                    self.settle_after(Some(&[pid])).await;
                }
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
