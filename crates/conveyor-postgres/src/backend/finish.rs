//! Finishing: a batch of reports in one `UPDATE … FROM unnest(…)`, each
//! applied only where the task is running under the report's token
//! (fencing); the follow-ups of the applied reports are enqueued in the same
//! transaction.

use std::collections::HashSet;

use conveyor_core::{
    Error, Finish, FinishAction, NewTask, Retention, TaskId, TaskState, Timestamp,
};

use super::PostgresBackend;
use crate::enqueue::timeout_ms;
use crate::error::db;
use crate::row::{col, param_id};
use crate::statements::kind;

/// The arrays of one `finish` statement.
#[derive(Default)]
struct Reports {
    ids: Vec<i64>,
    tokens: Vec<i64>,
    kinds: Vec<i16>,
    results: Vec<Option<Vec<u8>>>,
    errors: Vec<Option<String>>,
    retry_at: Vec<i64>,
    /// The report's keep (ms) for a task it completes or cancels, and for
    /// one it makes dead.
    keep_done: Vec<Option<i64>>,
    keep_dead: Vec<Option<i64>>,
}

impl Reports {
    /// Adds the report of lease `(id, token)`.
    fn push(
        &mut self,
        (id, token): (i64, i64),
        action: FinishAction,
        retention: Option<Retention>,
        now: Timestamp,
    ) {
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
        let keep = |state: TaskState| retention.map(|r| timeout_ms(r.for_state(state)));
        self.keep_done.push(keep(TaskState::Completed));
        self.keep_dead.push(keep(TaskState::Dead));
    }

    /// True when a report carries a retention: the batch takes the
    /// statement with the keeps' arrays.
    fn retained(&self) -> bool {
        self.keep_done.iter().any(Option::is_some)
    }

    /// The finish statement this batch takes (see [`Reports::retained`]).
    fn statement<'s>(&self, sql: &'s crate::statements::Statements) -> &'s str {
        if self.retained() {
            &sql.finish_retained
        } else {
            &sql.finish
        }
    }

    /// Runs the prepared finish statement (the one [`Reports::statement`]
    /// names); the leases it applied.
    async fn apply(
        &self,
        client: &tokio_postgres::Client,
        stmt: &tokio_postgres::Statement,
        now: Timestamp,
        [channel, finished]: [&str; 2],
    ) -> Result<Applied, Error> {
        let now = now.as_millis();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
            &self.ids,
            &self.tokens,
            &self.kinds,
            &self.results,
            &self.errors,
            &self.retry_at,
            &now,
            &channel,
            &finished,
            &self.keep_done,
            &self.keep_dead,
        ];
        let params = if self.retained() {
            &params[..]
        } else {
            &params[..9]
        };
        let rows = client
            .query(stmt, params)
            .await
            .map_err(|e| db("finishing tasks", e))?;
        let mut applied = Applied::default();
        for r in &rows {
            let id: i64 = col(r, 0, "id")?;
            applied.leases.insert((id, col(r, 1, "token")?));
            if col(r, 4, "node")? {
                applied.nodes.push(id);
            }
        }
        Ok(applied)
    }
}

/// What one finish statement applied.
#[derive(Default)]
struct Applied {
    /// The leases applied.
    leases: HashSet<(i64, i64)>,
    /// The tasks among them that are workflow nodes.
    nodes: Vec<i64>,
}

impl PostgresBackend {
    /// The body of `Backend::finish`.
    pub(super) async fn finish_reports(
        &self,
        reports: Vec<Finish>,
    ) -> Result<Vec<Result<(), Error>>, Error> {
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
            batch.push(key, r.action, r.retention, now);
            sent.push(Ok(key));
        }
        let mut applied = Applied::default();
        if !batch.ids.is_empty() {
            let mut conn = self.conn(what).await?;
            let channel = self.inner.schema.channel();
            let finished = self.inner.schema.finished_channel();
            let channels = [channel.as_str(), finished.as_str()];
            if follow.is_empty() {
                // The hot path: one statement, no transaction.
                let stmt = Self::prepared(&conn, what, batch.statement(&self.inner.sql)).await?;
                applied = batch.apply(&conn, &stmt, now, channels).await?;
            } else {
                // Reports and the follow-ups of those applied, in one
                // transaction: both or neither.
                let tx = conn.transaction().await.map_err(|e| db(what, e))?;
                let stmt = tx
                    .prepare_cached(batch.statement(&self.inner.sql))
                    .await
                    .map_err(|e| db(&format!("{what} (preparing)"), e))?;
                applied = batch.apply(tx.client(), &stmt, now, channels).await?;
                let tasks: Vec<NewTask> = follow
                    .into_iter()
                    .filter(|(key, _)| applied.leases.contains(key))
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
        if !applied.nodes.is_empty() {
            // Node tasks ended: their nodes settle now (their ends were
            // recorded with the finish, so nothing is lost if this fails).
            self.settle_after(Some(&applied.nodes)).await;
        }
        Ok(sent
            .into_iter()
            .zip(ids)
            .map(|(key, id)| match key {
                Ok(key) if applied.leases.contains(&key) => Ok(()),
                Ok(_) => Err(Error::StaleLease(id)),
                Err(e) => Err(e),
            })
            .collect())
    }
}
