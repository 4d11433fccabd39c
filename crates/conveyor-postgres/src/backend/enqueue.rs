//! Enqueueing through the backend: `enqueue_many` on a pooled connection,
//! with its wake-up sent at the commit or, beside other enqueues, by the
//! notifier after it; and [`PostgresBackend::enqueue_in`] inside the
//! caller's transaction. The statement itself is `crate::enqueue`'s.

use conveyor_core::{Enqueued, Error, NewTask};
use tokio_postgres::GenericClient;

use super::PostgresBackend;
use crate::error::db;

impl PostgresBackend {
    /// Enqueues `tasks` inside the caller's open transaction (or on the
    /// caller's connection): they exist, and wake workers, only if the caller
    /// commits. `client` must reach the database this backend uses; the tasks
    /// go to this backend's schema. Same semantics as
    /// [`Backend::enqueue_many`]; tasks with an ordering key hold a lock on
    /// their `(queue, key)` until the transaction ends, so other enqueuers of
    /// that key wait for it (reserving does not).
    ///
    /// [`Backend::enqueue_many`]: conveyor_core::Backend::enqueue_many
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

    /// The body of `Backend::enqueue_many`.
    pub(super) async fn enqueue_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
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
}
