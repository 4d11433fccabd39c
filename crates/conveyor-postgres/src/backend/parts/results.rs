//! The result store: one task read by id, with its result; waiting for it
//! to finish is woken by the `NOTIFY` of each finishing statement.

use std::time::Duration;

use conveyor_core::{async_trait, Error, FinishMark, ResultStore, TaskId, TaskRecord};

use crate::backend::PostgresBackend;
use crate::error::db;
use crate::row::{self, param_id};

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
