//! Reading the tasks for people: counts per queue and state, pages of a
//! filtered listing, text search and counts of a filter, each within a
//! bounded amount of work at a million tasks.
//!
//! Counts come from `task_counts` (migration 7): statement-level triggers
//! with transition tables add one row per queue, handler and state a statement
//! changed (a reservation of 500 tasks adds two rows, not 500), so the hot
//! path never updates a shared counter row (which would serialise every
//! worker on its lock). Reading sums the rows; [`compact`] folds them into
//! one per queue and state, from maintenance and when a read finds many.
//!
//! No index serves inspection alone (every index is paid for on the hot
//! path). A listing goes through its state's own partial index when the kept
//! counts say that holds at most [`SCAN_BUDGET`] tasks (a rare state is
//! found at once), and otherwise along the primary key from the page's
//! cursor, reading at most [`SCAN_BUDGET`] tasks of the state and saying
//! where it stopped.
//!
//! Text is matched exactly as [`Search`] does (a substring of the params'
//! bytes or of the error, ASCII case folded): params are read as Latin-1,
//! which maps every byte to one character and never fails, and folded with
//! `lower(… COLLATE "C")`, which folds ASCII only.

use std::collections::BTreeMap;

use conveyor_core::{
    Count, Error, ListOrder, ListParams, Page, QueueStats, Search, TaskState, Timestamp,
    COUNT_BUDGET, SCAN_BUDGET,
};
use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use crate::backend::PostgresBackend;
use crate::counts::CountStatements;
use crate::error::db;
use crate::row::{col, record};
use crate::statements::{walk_limit, Predicates, RECORD_COLUMNS};

/// Count rows past which a read of the counts folds them first.
const COMPACT_PAST: i64 = 10_000;

/// Folds the kept counts into one row per queue and state. Safe beside
/// writers (their new rows are not in the statement's snapshot and stay) and
/// beside another fold (rows it deleted first are skipped).
pub(crate) async fn compact(conn: &Object, sql: &CountStatements) -> Result<(), Error> {
    let what = "folding the kept counts";
    let stmt = PostgresBackend::prepared(conn, what, &sql.compact).await?;
    conn.execute(&stmt, &[]).await.map_err(|e| db(what, e))?;
    Ok(())
}

/// The partial index terms that hold a state's tasks, and the states they
/// hold (which the kept counts sum to price the index path).
fn index_of(state: TaskState, p: &Predicates) -> (String, Vec<TaskState>) {
    use TaskState as S;
    match state {
        S::Available => (p.available.clone(), vec![S::Available]),
        S::Scheduled | S::Retrying => (p.timed.clone(), vec![S::Scheduled, S::Retrying]),
        S::Running => (p.lease_index.to_string(), vec![S::Running]),
        S::Completed | S::Dead | S::Cancelled => (p.finished.clone(), vec![state]),
    }
}

/// `$1` queue or NULL, `$2` handler or NULL, `$3` text as Latin-1 or NULL,
/// `$4` text as UTF-8 or NULL.
const FILTERS: &str = "($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR handler = $2) \
     AND ($3::text IS NULL \
       OR strpos(lower(convert_from(payload, 'LATIN1') COLLATE \"C\"), $3) > 0 \
       OR strpos(lower(error COLLATE \"C\"), $4) > 0)";

/// The text's two forms for `$3` and `$4`: its folded bytes as Latin-1
/// characters (to meet the params read as Latin-1), and as UTF-8.
fn needles(search: Option<&Search>) -> (Option<String>, Option<String>) {
    match search {
        None => (None, None),
        Some(s) => {
            let folded = s.text().to_ascii_lowercase();
            let latin1 = folded.bytes().map(char::from).collect();
            (Some(latin1), Some(folded))
        }
    }
}

fn keyset(order: ListOrder, column: &str) -> String {
    match order {
        ListOrder::NewestFirst => format!("{column} < $5 ORDER BY {column} DESC"),
        _ => format!("{column} > $5 ORDER BY {column}"),
    }
}

/// The walk of [`PostgresBackend::walk_page`] over table `t` for the tasks
/// of state `code`: `$1` queue or NULL, `$2` handler or NULL, `$3` and `$4`
/// the search's needles, `$5` the cursor, `$6` the page's size, `$7` the
/// budget. Answers the page's records, each followed by the tasks read and
/// the last id read.
fn walk_sql(t: &str, code: i64, order: ListOrder) -> String {
    let r_columns = RECORD_COLUMNS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (edge, direction) = match order {
        ListOrder::NewestFirst => ("min", "DESC"),
        _ => ("max", "ASC"),
    };
    format!(
        "WITH scan AS (
             SELECT id, queue, handler, payload, error FROM {t}
             WHERE state + 0 = {code} AND ($1::text IS NULL OR queue = $1) AND {keyset}
             LIMIT {limit}
         ),
         hits AS (
             SELECT id FROM scan WHERE {FILTERS} ORDER BY id {direction} LIMIT $6
         )
         SELECT {r_columns}, s.read, s.edge
         FROM (SELECT count(*)::bigint AS read, {edge}(id) AS edge FROM scan) s
         LEFT JOIN LATERAL (
             SELECT {RECORD_COLUMNS} FROM {t} WHERE id IN (SELECT id FROM hits)
         ) r ON true
         ORDER BY r.id {direction}",
        keyset = keyset(order, "id"),
        limit = walk_limit(7),
    )
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PostgresBackend {
    /// Counts per queue and state, with the oldest ready task of each queue.
    pub(crate) async fn kept_stats(&self) -> Result<Vec<QueueStats>, Error> {
        let what = "reading queue stats";
        let sql = &self.inner.counts;
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, &sql.read).await?;
        let mut rows = conn.query(&stmt, &[]).await.map_err(|e| db(what, e))?;
        let folded_rows = rows.first().map(|r| col::<i64>(r, 3, "rows")).transpose()?;
        if folded_rows.is_some_and(|n| n > COMPACT_PAST) {
            // Maintenance folds them; a read that finds many does it too
            // (and reads on if it may not write).
            match compact(&conn, sql).await {
                Ok(()) => rows = conn.query(&stmt, &[]).await.map_err(|e| db(what, e))?,
                Err(e) => tracing::debug!(error = %e, "postgres: cannot fold the kept counts"),
            }
        }
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        for r in &rows {
            let queue: String = col(r, 0, "queue")?;
            let code: i16 = col(r, 1, "state")?;
            let n: i64 = col(r, 2, "n")?;
            if n == 0 {
                continue;
            }
            let state = TaskState::from_code(i64::from(code)).ok_or_else(|| {
                crate::error::bad_data(format!(
                    "queue {queue:?}: kept count for the unknown state code {code}"
                ))
            })?;
            let n = u64::try_from(n).map_err(|_| {
                crate::error::bad_data(format!(
                    "queue {queue:?}: negative kept count {n} of {state} tasks"
                ))
            })?;
            by_queue
                .entry(queue.clone())
                .or_insert_with(|| QueueStats {
                    queue,
                    ..QueueStats::default()
                })
                .counts
                .insert(state, n);
        }
        let now = self.inner.clock.now().as_millis();
        let available = Self::prepared(&conn, what, &sql.oldest_available).await?;
        let due = Self::prepared(&conn, what, &sql.oldest_due).await?;
        for stats in by_queue.values_mut() {
            let mut oldest: Option<i64> = None;
            if stats.count(TaskState::Available) > 0 {
                let row = conn
                    .query_one(&available, &[&stats.queue])
                    .await
                    .map_err(|e| db(what, e))?;
                oldest = col(&row, 0, "oldest")?;
            }
            if stats.count(TaskState::Scheduled) + stats.count(TaskState::Retrying) > 0 {
                let row = conn
                    .query_one(&due, &[&stats.queue, &now])
                    .await
                    .map_err(|e| db(what, e))?;
                let d: Option<i64> = col(&row, 0, "oldest")?;
                oldest = match (oldest, d) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            stats.oldest_ready = oldest.map(Timestamp);
        }
        Ok(by_queue.into_values().collect())
    }

    /// Tasks in `states` (of `queue` and `handler`), from the kept counts.
    async fn kept(
        &self,
        conn: &Object,
        states: &[TaskState],
        queue: Option<&str>,
        handler: Option<&str>,
    ) -> Result<u64, Error> {
        let what = "reading the kept counts";
        let stmt = Self::prepared(conn, what, &self.inner.counts.kept).await?;
        // Codes are 0..=6: the cast cannot truncate.
        let codes: Vec<i16> = states.iter().map(|s| s.code() as i16).collect();
        let row = conn
            .query_one(&stmt, &[&codes, &queue, &handler])
            .await
            .map_err(|e| db(what, e))?;
        let n: i64 = col(&row, 0, "n")?;
        Ok(n.unsigned_abs())
    }

    /// How many entries the state's index path reads for `params`.
    async fn index_cost(&self, conn: &Object, params: &ListParams) -> Result<u64, Error> {
        let (_, states) = index_of(params.state, &Predicates::new());
        // Only the ready index is ordered by queue first.
        let queue = match params.state {
            TaskState::Available => params.queue.as_deref(),
            _ => None,
        };
        self.kept(conn, &states, queue, None).await
    }

    /// A page of `params` and `search` within the budget: through the
    /// state's own index when the kept counts say it is small enough, else
    /// along the primary key.
    pub(crate) async fn search_page(
        &self,
        params: &ListParams,
        search: Option<&Search>,
    ) -> Result<Page, Error> {
        let conn = self.conn("listing tasks").await?;
        match self.index_page(&conn, params, search).await? {
            Some(page) => Ok(page),
            None => self.walk_page(&conn, params, search).await,
        }
    }

    /// A page of `params` and `search` read through the state's own index;
    /// `None` when the state holds more tasks than [`SCAN_BUDGET`], so the
    /// index would read too many.
    pub(crate) async fn index_page(
        &self,
        conn: &Object,
        params: &ListParams,
        search: Option<&Search>,
    ) -> Result<Option<Page>, Error> {
        let what = "listing tasks";
        let cost = self.index_cost(conn, params).await?;
        if cost > SCAN_BUDGET as u64 {
            return Ok(None);
        }
        let t = self.inner.schema.table("tasks");
        let p = Predicates::new();
        let code = params.state.code();
        let (latin1, utf8) = needles(search);
        let cursor = params.id_bound();
        let limit = to_i64(params.limit);
        let (terms, _) = index_of(params.state, &p);
        let text = format!(
            "SELECT {RECORD_COLUMNS} FROM {t} WHERE {terms} AND state = {code} AND {FILTERS} \
             AND {} LIMIT $6",
            keyset(params.order, "id")
        );
        let stmt = Self::prepared(conn, what, &text).await?;
        let args: [&(dyn ToSql + Sync); 6] = [
            &params.queue,
            &params.handler,
            &latin1,
            &utf8,
            &cursor,
            &limit,
        ];
        let rows = conn.query(&stmt, &args).await.map_err(|e| db(what, e))?;
        let tasks = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        let next = if tasks.len() < params.limit {
            None
        } else {
            tasks.last().map(|t| t.id)
        };
        Ok(Some(Page::new(tasks, next, cost)))
    }

    /// A page of `params` and `search` along the primary key, reading at
    /// most [`SCAN_BUDGET`] tasks of the state.
    async fn walk_page(
        &self,
        conn: &Object,
        params: &ListParams,
        search: Option<&Search>,
    ) -> Result<Page, Error> {
        let what = "listing tasks";
        let t = self.inner.schema.table("tasks");
        let code = params.state.code();
        let (latin1, utf8) = needles(search);
        let cursor = params.id_bound();
        let limit = to_i64(params.limit);
        // Along the primary key: read at most `budget` tasks of the state,
        // keep the matches, and say how many were read and where it ended.
        // `state + 0` hides the state from the indexes: through the state's
        // own index the planner would read every task of the state and sort
        // them (measured: 0.5 s at a million), where the walk by id stops
        // after the budget. The budget is read through a sub-select (see
        // `walk_limit`).
        let budget = to_i64(SCAN_BUDGET);
        let text = walk_sql(&t, code, params.order);
        let stmt = Self::prepared(conn, what, &text).await?;
        let args: [&(dyn ToSql + Sync); 7] = [
            &params.queue,
            &params.handler,
            &latin1,
            &utf8,
            &cursor,
            &limit,
            &budget,
        ];
        let rows = conn.query(&stmt, &args).await.map_err(|e| db(what, e))?;
        let mut tasks = Vec::new();
        let (mut read, mut edge) = (0i64, None::<i64>);
        // The scan's figures follow the record's columns.
        let at = RECORD_COLUMNS.split(", ").count();
        for r in &rows {
            read = col(r, at, "read")?;
            edge = col(r, at + 1, "edge")?;
            if col::<Option<i64>>(r, 0, "id")?.is_some() {
                tasks.push(record(r)?);
            }
        }
        let next = if tasks.len() >= params.limit {
            tasks.last().map(|t| t.id)
        } else if read >= budget {
            edge.map(crate::row::task_id).transpose()?
        } else {
            None
        };
        Ok(Page::new(tasks, next, read.unsigned_abs()))
    }

    /// How many tasks `params` and `search` match.
    pub(crate) async fn search_count(
        &self,
        params: &ListParams,
        search: Option<&Search>,
    ) -> Result<Count, Error> {
        let what = "counting tasks";
        let conn = self.conn(what).await?;
        if search.is_none() {
            let (queue, handler) = (params.queue.as_deref(), params.handler.as_deref());
            let n = self.kept(&conn, &[params.state], queue, handler).await?;
            return Ok(Count::exact(n));
        }
        let t = self.inner.schema.table("tasks");
        let p = Predicates::new();
        let code = params.state.code();
        let (latin1, utf8) = needles(search);
        let budget = to_i64(COUNT_BUDGET);
        let cost = self.index_cost(&conn, params).await?;
        let (terms, _) = index_of(params.state, &p);
        let text = if cost <= COUNT_BUDGET as u64 {
            // `$5` is bound for both texts; this one only needs it named.
            format!(
                "SELECT count(*)::bigint, 0::bigint FROM {t} \
                 WHERE {terms} AND state = {code} AND {FILTERS} AND $5::bigint > 0"
            )
        } else {
            format!(
                "WITH scan AS (
                     SELECT queue, handler, payload, error FROM {t}
                     WHERE state + 0 = {code} AND ($1::text IS NULL OR queue = $1)
                     ORDER BY id LIMIT {limit}
                 )
                 SELECT count(*) FILTER (WHERE {FILTERS})::bigint, count(*)::bigint FROM scan",
                limit = walk_limit(5),
            )
        };
        let stmt = Self::prepared(&conn, what, &text).await?;
        let args: [&(dyn ToSql + Sync); 5] =
            [&params.queue, &params.handler, &latin1, &utf8, &budget];
        let row = conn
            .query_one(&stmt, &args)
            .await
            .map_err(|e| db(what, e))?;
        let n: i64 = col(&row, 0, "count")?;
        let read: i64 = col(&row, 1, "read")?;
        Ok(if read >= budget {
            Count::at_least(n.unsigned_abs())
        } else {
            Count::exact(n.unsigned_abs())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use conveyor_core::SystemClock;
    use tokio_postgres::NoTls;

    use super::*;

    /// The walk is planned along the primary key even when PostgreSQL plans
    /// it for the call's own values (a custom plan, as for the first five
    /// calls on a connection): over 200,000 completed tasks with fresh
    /// statistics, the budget written as a plain `$7` makes that plan read
    /// the whole table and sort it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_walk_follows_the_primary_key_in_plans_made_for_its_values() {
        let url = std::env::var("CONVEYOR_POSTGRES_URL")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_string());
        let schema = format!("conveyor_test_{:016x}", fastrand::u64(..));
        let _backend = PostgresBackend::connect_with(&url, &schema, Arc::new(SystemClock))
            .await
            .expect("connect to the test server");
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
        tokio::spawn(conn);
        let t = format!("\"{schema}\".tasks");
        let completed = TaskState::Completed.code();
        client
            .batch_execute(&format!(
                "INSERT INTO {t} (run_at, created_at, finished_at, max_attempts, state,
                                  queue, handler, payload)
                 SELECT 0, 0, 0, 1, {completed}, 'q' || (g % 4), 'h' || (g % 10), '\\x'::bytea
                 FROM generate_series(1, 200000) g;
                 ANALYZE {t};
                 SET plan_cache_mode = force_custom_plan;
                 PREPARE walk (text, text, text, text, bigint, bigint, bigint) AS {};",
                walk_sql(&t, completed, ListOrder::OldestFirst)
            ))
            .await
            .expect("prepare the walk");
        let plan = client
            .query(
                "EXPLAIN EXECUTE walk('q0', 'h4', NULL, NULL, 0, 50, 10000)",
                &[],
            )
            .await
            .expect("explain");
        let plan: Vec<String> = plan.iter().map(|r| r.get(0)).collect();
        client
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await
            .expect("drop the test schema");
        let plan = plan.join("\n");
        assert!(plan.contains("tasks_pkey"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}
