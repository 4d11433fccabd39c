//! Inspection: counts, pages and counts of a filter (read as `crate::inspect`
//! says), and plain listings, through a rare state's index or along the
//! primary key.

use conveyor_core::{
    async_trait, Count, Error, Inspection, ListOrder, ListParams, Page, QueueStats, Search,
    TaskRecord,
};
use deadpool_postgres::Object;

use crate::backend::PostgresBackend;
use crate::error::db;
use crate::row;

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
