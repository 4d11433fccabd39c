//! Reading the tasks for people: counts per queue and state, pages of a
//! filtered listing, text search and counts of a filter, each within a
//! bounded amount of work at a million tasks.
//!
//! No index serves inspection alone: every index of `tasks` is paid for on
//! the hot path (an enqueue or a state change writes it), and the inspection
//! indexes measured cost more than the rest of a task's life. So a listing
//! takes one of two roads, chosen from the kept counts (`crate::tally`):
//!
//! - **Through the state's own index** (the partial index the hot path keeps
//!   for that state) when it holds at most [`SCAN_BUDGET`] tasks: every
//!   candidate is read and sorted by id, so a rare state (twelve dead tasks
//!   among a million completed ones) is found at once.
//! - **Along the table by id** from the page's cursor otherwise: the state
//!   holds more than [`SCAN_BUDGET`] tasks, so its rows are common enough to
//!   meet along the way; a page reads at most [`SCAN_BUDGET`] candidates (and
//!   [`WALK_ROWS`] rows of any state) and says where it stopped.
//!
//! Text is matched in SQL with `instr(lower(…))`, which folds ASCII only, as
//! [`Search`] does.

use std::collections::BTreeMap;

use conveyor_core::{
    BackendErrorKind, Count, Error, ListOrder, ListParams, Page, QueueStats, Search, TaskRecord,
    TaskState, Timestamp, Transition, COUNT_BUDGET, SCAN_BUDGET,
};
use rusqlite::{params, params_from_iter};

use crate::error::db_err;
use crate::row::{record_from_row, task_id};
use crate::sql::RECORD_COLUMNS;
use crate::store::Store;

/// Rows of any state one page reads at most along the table.
pub(crate) const WALK_ROWS: usize = 4 * SCAN_BUDGET;

/// The partial index holding a state's tasks, the terms that select it, and
/// the states it holds.
fn index_of(state: TaskState) -> (&'static str, String, &'static [TaskState]) {
    use TaskState as S;
    match state {
        S::Available => (
            "tasks_ready",
            format!("state IN ({})", Transition::Reserve.source_codes()),
            Transition::Reserve.sources(),
        ),
        S::Scheduled | S::Retrying => (
            "tasks_due",
            format!("state IN ({})", Transition::Due.source_codes()),
            Transition::Due.sources(),
        ),
        S::Running => (
            "tasks_leased",
            format!("state IN ({})", Transition::Complete.source_codes()),
            Transition::Complete.sources(),
        ),
        S::Completed | S::Dead | S::Cancelled => {
            ("tasks_finished", "finished_at IS NOT NULL".to_string(), &[])
        }
    }
}

/// The filters every query binds: `?1` state, `?2` queue or NULL, `?3`
/// handler or NULL, `?4` folded text or NULL.
const FILTERS: &str = "state = ?1 AND (?2 IS NULL OR queue = ?2) \
     AND (?3 IS NULL OR handler = ?3) \
     AND (?4 IS NULL OR instr(lower(payload), ?4) > 0 OR instr(lower(error), ?4) > 0)";

/// `?5` the cursor, `?6` the limit: a page through `state`'s index.
fn indexed_page(state: TaskState, newest: bool) -> String {
    let (index, terms, _) = index_of(state);
    let keyset = if newest {
        "id < ?5 ORDER BY id DESC"
    } else {
        "id > ?5 ORDER BY id"
    };
    format!(
        "SELECT {RECORD_COLUMNS} FROM tasks INDEXED BY {index} \
         WHERE {terms} AND {FILTERS} AND {keyset} LIMIT ?6"
    )
}

/// A count through `state`'s index.
fn indexed_count(state: TaskState) -> String {
    let (index, terms, _) = index_of(state);
    format!("SELECT COUNT(*) FROM tasks INDEXED BY {index} WHERE {terms} AND {FILTERS}")
}

/// `?5` the cursor: every row along the table with 0 (not a candidate: other
/// state or queue), 1 (a candidate that does not match) or 2 (a match). The
/// text is only looked for in candidates.
fn walk(newest: bool) -> String {
    let keyset = if newest {
        "id < ?5 ORDER BY id DESC"
    } else {
        "id > ?5 ORDER BY id"
    };
    format!(
        "SELECT id, CASE WHEN state = ?1 AND (?2 IS NULL OR queue = ?2) THEN \
           CASE WHEN (?3 IS NULL OR handler = ?3) AND (?4 IS NULL \
             OR instr(lower(payload), ?4) > 0 OR instr(lower(error), ?4) > 0) \
           THEN 2 ELSE 1 END ELSE 0 END \
         FROM tasks WHERE {keyset}"
    )
}

/// The kept counts.
const COUNTS: &str = "SELECT queue, state, SUM(n) FROM task_counts GROUP BY queue, state \
     HAVING SUM(n) <> 0 ORDER BY queue, state";

/// `?1` queue: when its available task with the lowest id became ready (its
/// due time: enqueued, or the end of a delay or backoff),
/// found with one index seek per priority level (the ready index is ordered
/// by queue, priority, id).
fn oldest_available() -> String {
    let ready = Transition::Reserve.source_codes();
    let first = |more: &str| {
        format!(
            "SELECT priority FROM tasks WHERE queue = ?1 AND state IN ({ready}){more} \
             ORDER BY priority DESC LIMIT 1"
        )
    };
    format!(
        "WITH RECURSIVE levels(p) AS (
             SELECT ({top})
             UNION ALL
             SELECT ({below}) FROM levels WHERE p IS NOT NULL
         )
         SELECT MIN((SELECT MAX(run_at, created_at) FROM tasks WHERE queue = ?1
                     AND state IN ({ready}) AND priority = levels.p ORDER BY id LIMIT 1))
         FROM levels WHERE p IS NOT NULL",
        top = first(""),
        below = first(" AND priority < levels.p"),
    )
}

/// `?1` queue, `?2` now: the earliest due time of its tasks that are due but
/// not yet made available (few: every reservation makes them available).
fn oldest_due() -> String {
    format!(
        "SELECT MIN(MAX(run_at, created_at)) FROM tasks WHERE state IN ({}) AND run_at <= ?2 AND queue = ?1",
        Transition::Due.source_codes()
    )
}

impl Store {
    /// Counts per queue and state, with the oldest ready task of each queue.
    pub(crate) fn stats(&mut self) -> Result<Vec<QueueStats>, Error> {
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        {
            let mut stmt = self.conn.prepare_cached(COUNTS).map_err(db_err)?;
            let mut rows = stmt.query([]).map_err(db_err)?;
            while let Some(row) = rows.next().map_err(db_err)? {
                let queue: String = row.get(0).map_err(db_err)?;
                let code: i64 = row.get(1).map_err(db_err)?;
                let n: i64 = row.get(2).map_err(db_err)?;
                let state = TaskState::from_code(code).ok_or_else(|| {
                    Error::backend(
                        BackendErrorKind::Data,
                        format!("queue {queue:?}: kept count for unknown state code {code}"),
                    )
                })?;
                let n = u64::try_from(n).map_err(|_| {
                    Error::backend(
                        BackendErrorKind::Data,
                        format!("queue {queue:?}: negative kept count {n} of {state} tasks"),
                    )
                })?;
                let stats = by_queue.entry(queue.clone()).or_insert_with(|| QueueStats {
                    queue,
                    ..QueueStats::default()
                });
                stats.counts.insert(state, n);
            }
        }
        let now = self.now();
        let (available, due) = (oldest_available(), oldest_due());
        for stats in by_queue.values_mut() {
            let mut oldest: Option<i64> = None;
            if stats.count(TaskState::Available) > 0 {
                oldest = self.min_time(&available, params![stats.queue])?;
            }
            if stats.count(TaskState::Scheduled) + stats.count(TaskState::Retrying) > 0 {
                let d = self.min_time(&due, params![stats.queue, now.0])?;
                oldest = match (oldest, d) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            stats.oldest_ready = oldest.map(Timestamp);
        }
        Ok(by_queue.into_values().collect())
    }

    fn min_time(&self, text: &str, p: impl rusqlite::Params) -> Result<Option<i64>, Error> {
        self.conn
            .prepare_cached(text)
            .and_then(|mut s| s.query_row(p, |r| r.get::<_, Option<i64>>(0)))
            .map_err(db_err)
    }

    /// Every task `params` lists (no budget: a caller paging through all
    /// of them reads them all anyway).
    pub(crate) fn list(&mut self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        Ok(self.search(params, None, usize::MAX, usize::MAX)?.tasks)
    }

    /// A page of `params` and `search`, within the budgets.
    pub(crate) fn page(
        &mut self,
        params: &ListParams,
        search: Option<&Search>,
    ) -> Result<Page, Error> {
        self.search(params, search, SCAN_BUDGET, WALK_ROWS)
    }

    /// How many tasks `params` and `search` match.
    pub(crate) fn count(
        &mut self,
        params: &ListParams,
        search: Option<&Search>,
    ) -> Result<Count, Error> {
        if search.is_none() {
            let n = self.kept(
                &[params.state],
                params.queue.as_deref(),
                params.handler.as_deref(),
            )?;
            return Ok(Count::exact(n));
        }
        if self.index_cost(params)? <= to_u64(COUNT_BUDGET) {
            let n: i64 = self
                .conn
                .prepare_cached(&indexed_count(params.state))
                .and_then(|mut s| {
                    s.query_row(params_from_iter(&bind(params, search, 0)[..4]), |r| {
                        r.get(0)
                    })
                })
                .map_err(db_err)?;
            return Ok(Count::exact(to_u64_i(n)));
        }
        let params = params.clone().order(ListOrder::OldestFirst).after_opt(None);
        let mut n = 0u64;
        let mut from = None;
        let mut read = 0usize;
        loop {
            let walked = self.walk_ids(
                &params.clone().after_opt(from),
                search,
                usize::MAX,
                COUNT_BUDGET - read,
                2 * COUNT_BUDGET,
                true,
            )?;
            n += walked.matches;
            read += walked.candidates;
            match walked.stopped_at {
                None => return Ok(Count::exact(n)),
                Some(_) if read >= COUNT_BUDGET || walked.rows >= 2 * COUNT_BUDGET => {
                    return Ok(Count::at_least(n));
                }
                Some(at) => from = Some(at),
            }
        }
    }

    /// Tasks in `states` (of `queue` and `handler`), from the kept counts.
    fn kept(
        &self,
        states: &[TaskState],
        queue: Option<&str>,
        handler: Option<&str>,
    ) -> Result<u64, Error> {
        let sql = format!(
            "SELECT COALESCE(SUM(n), 0) FROM task_counts WHERE state IN ({}) \
             AND (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR handler = ?2)",
            conveyor_core::codes(states)
        );
        let n: i64 = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row([queue, handler], |r| r.get(0)))
            .map_err(db_err)?;
        Ok(to_u64_i(n))
    }

    /// How many entries the state's index path reads for `params`.
    fn index_cost(&self, params: &ListParams) -> Result<u64, Error> {
        let (index, _, states) = index_of(params.state);
        match index {
            // Ordered by queue first: a queue narrows it.
            "tasks_ready" => self.kept(states, params.queue.as_deref(), None),
            "tasks_finished" => self.kept(&[params.state], None, None),
            _ => self.kept(states, None, None),
        }
    }

    fn search(
        &mut self,
        params: &ListParams,
        search: Option<&Search>,
        budget: usize,
        rows: usize,
    ) -> Result<Page, Error> {
        let newest = params.order == ListOrder::NewestFirst;
        let cost = self.index_cost(params)?;
        if cost <= to_u64(SCAN_BUDGET) {
            let text = indexed_page(params.state, newest);
            let mut stmt = self.conn.prepare_cached(&text).map_err(db_err)?;
            let mut bound = bind(params, search, params.id_bound());
            let limit = i64::try_from(params.limit).unwrap_or(i64::MAX);
            bound.push(Box::new(limit));
            let mut rows = stmt.query(params_from_iter(&bound)).map_err(db_err)?;
            let mut tasks = Vec::new();
            while let Some(row) = rows.next().map_err(db_err)? {
                tasks.push(record_from_row(row)?);
            }
            let next = if tasks.len() < params.limit {
                None
            } else {
                tasks.last().map(|t| t.id)
            };
            return Ok(Page::new(tasks, next, cost));
        }
        let walked = self.walk_ids(params, search, params.limit, budget, rows, false)?;
        let mut tasks = Vec::with_capacity(walked.hits.len());
        for id in walked.hits {
            // Read in this same transaction: the row is there.
            if let Some(record) = self.get(id)? {
                tasks.push(record);
            }
        }
        Ok(Page::new(
            tasks,
            walked.stopped_at,
            to_u64(walked.candidates),
        ))
    }

    /// Walks the table by id from `params`' cursor, collecting up to `limit`
    /// matches (only counting them when `count_only`), reading at most
    /// `budget` candidates and `max_rows` rows.
    fn walk_ids(
        &mut self,
        params: &ListParams,
        search: Option<&Search>,
        limit: usize,
        budget: usize,
        max_rows: usize,
        count_only: bool,
    ) -> Result<Walked, Error> {
        let newest = params.order == ListOrder::NewestFirst;
        let mut stmt = self.conn.prepare_cached(&walk(newest)).map_err(db_err)?;
        let bound = bind(params, search, params.id_bound());
        let mut rows = stmt.query(params_from_iter(&bound)).map_err(db_err)?;
        let mut walked = Walked::default();
        while let Some(row) = rows.next().map_err(db_err)? {
            let id: i64 = row.get(0).map_err(db_err)?;
            let kind: i64 = row.get(1).map_err(db_err)?;
            let id = task_id(id)?;
            let last = Some(id);
            walked.rows += 1;
            if kind > 0 {
                walked.candidates += 1;
            }
            if kind == 2 {
                walked.matches += 1;
                if !count_only {
                    walked.hits.push(id);
                }
                if walked.hits.len() >= limit {
                    walked.stopped_at = last;
                    return Ok(walked);
                }
            }
            if walked.candidates >= budget || walked.rows >= max_rows {
                walked.stopped_at = last;
                return Ok(walked);
            }
        }
        Ok(walked)
    }
}

/// What a walk found.
#[derive(Default)]
struct Walked {
    hits: Vec<conveyor_core::TaskId>,
    matches: u64,
    candidates: usize,
    rows: usize,
    /// The last row read, when the walk stopped before the end.
    stopped_at: Option<conveyor_core::TaskId>,
}

/// `?1`–`?5` of the queries.
fn bind(
    params: &ListParams,
    search: Option<&Search>,
    cursor: i64,
) -> Vec<Box<dyn rusqlite::ToSql>> {
    let folded = search.map(|s| s.text().to_ascii_lowercase());
    vec![
        Box::new(params.state.code()),
        Box::new(params.queue.clone()),
        Box::new(params.handler.clone()),
        Box::new(folded),
        Box::new(cursor),
    ]
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn to_u64_i(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
