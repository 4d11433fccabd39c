//! Every SQL statement the embedded backend runs, written once.
//!
//! The state machine lives in `conveyor_core::task_state`: each statement takes
//! its `WHERE state IN (…)` from [`Transition::source_codes`] and writes
//! `Transition::X.target().code()`, so a new edge there changes these texts and
//! nothing else. The texts are built once per process and then used as keys of
//! rusqlite's prepared-statement cache, so each is parsed once per connection.
//!
//! The statements that write many rows at once (inserts, reservations,
//! completions, promotions) say `OR FAIL`: a constraint they break stops
//! them without undoing the rows they wrote before it, so SQLite keeps no
//! statement journal for them (with the default `ABORT`, every page such a
//! statement changes is copied first, in case it must be undone alone). They
//! need none: a request that fails is undone whole, by its savepoint or its
//! transaction (`crate::db_thread`), and no request goes on after one of
//! them failed.
//!
//! The partial indexes of [`crate::schema`] are built from the same helpers:
//! SQLite only uses a partial index when the query repeats the index's `WHERE`
//! terms, so both sides must spell them identically.

use std::sync::OnceLock;

use conveyor_core::attempt::{ERROR_CHARS, HISTORY_LIMIT};
use conveyor_core::{codes, TaskState, Transition, CANCELLED_WHILE_RUNNING};

/// The columns of a [`conveyor_core::TaskRecord`], in the order
/// `crate::row::record_from_row` reads them.
pub(crate) const RECORD_COLUMNS: &str = "id, queue, handler, state, payload, priority, \
     attempts, max_attempts, run_at, unique_key, ordering_key, result, error, created_at, \
     finished_at, trace, worker, started_at, history, keep_ms, expires_at";

/// The error a task gets when its lease runs out and attempts remain.
const LEASE_EXPIRED: &str = "lease expired";
/// The error a task gets when its lease runs out on its last attempt.
const LEASE_EXPIRED_FINAL: &str = "lease expired on the last attempt";

/// The `history` column with the latest attempt (the row's `attempts`,
/// `worker` and `started_at`, before the update) appended, ended at `end`
/// as `outcome` with the error `text` (SQL expressions), keeping the latest
/// [`HISTORY_LIMIT`] and clipping the text to [`ERROR_CHARS`] characters:
/// the stored form `conveyor_core::attempt` reads. A history that is not a
/// JSON array (corrupt) starts again empty rather than failing the update.
pub(crate) fn append_history(end: &str, outcome: &str, text: &str) -> String {
    let base = "(CASE WHEN json_valid(history) THEN \
        (CASE WHEN json_type(history) = 'array' THEN history ELSE '[]' END) ELSE '[]' END)";
    format!(
        "json_insert(CASE WHEN json_array_length({base}) >= {HISTORY_LIMIT} \
           THEN json_remove({base}, '$[0]') ELSE {base} END, '$[#]', \
           json_object('n', attempts, 'w', worker, 's', started_at, 'e', {end}, \
             'o', {outcome}, 'x', substr({text}, 1, {ERROR_CHARS})))"
    )
}

/// The codes of the unfinished states, for `state IN (…)`.
pub(crate) fn unfinished_codes() -> String {
    codes(&TaskState::UNFINISHED)
}

/// Rows per insert statement: a batch of new tasks goes in as few statements
/// as these sizes allow (per-statement overhead, and the `AUTOINCREMENT`
/// counter, are paid per statement rather than per row).
pub(crate) const INSERT_ROWS: [usize; 3] = [64, 8, 1];

/// Tasks one reserving or completing statement changes, largest first: a
/// reserve of `n` tasks, or `n` plain completions, take as few statements as
/// these sizes allow (a statement's setup, binding and cursors on the table
/// and its indexes are paid per statement rather than per task).
pub(crate) const BATCH_ROWS: [usize; 4] = [64, 16, 4, 1];

/// Parameters each inserted row binds.
pub(crate) const INSERT_PARAMS: usize = 13;

/// The statements, as built once for this process.
pub(crate) fn sql() -> &'static Sql {
    static SQL: OnceLock<Sql> = OnceLock::new();
    SQL.get_or_init(Sql::build)
}

/// The text of every statement.
#[derive(Debug)]
pub(crate) struct Sql {
    /// `?1` queue, `?2` unique key → the unfinished task holding the key.
    pub find_unique: String,
    /// Inserts new tasks, [`INSERT_ROWS`] statements for as many rows each
    /// (largest first); a row binds, in order: queue, handler, state, priority,
    /// max attempts, run at, timeout (ms), unique key, ordering key, created at,
    /// payload, trace, keep (ms).
    pub insert: Vec<(usize, String)>,
    /// `?1` now: scheduled or retrying tasks (one statement per state, with
    /// that state) that are due become available → their queues.
    pub promote_due: Vec<(TaskState, String)>,
    /// `?1` now → a row when a scheduled or retrying task is due.
    pub any_due: String,
    /// `?1` queue, `?2` limit: the tasks to reserve, in order, as they are now.
    pub pick: String,
    /// `?1` lease until, `?2` worker, `?3` now, then the ids: reserves
    /// picked tasks (the attempts' worker and start in the same write),
    /// [`BATCH_ROWS`] statements for as many ids each (largest first).
    pub take: Vec<(usize, String)>,
    /// `?1` id, `?2` token, `?3` lease until.
    pub renew: String,
    /// `?1` id, `?2` token, `?3` result, `?4` now, `?5` the report's keep
    /// (ms) for a completed task. Every finishing statement stamps the
    /// expiry: finished at plus the task's own keep, else the report's,
    /// else none (`NULL`: the retention `prune` is given).
    pub complete: String,
    /// `?1` now, then (id, token, result) for each task → the ids of the
    /// tasks completed (a stale token completes nothing), [`BATCH_ROWS`]
    /// statements for as many tasks each. No id may come twice. The
    /// reports carry no retention of their own.
    pub complete_many: Vec<(usize, String)>,
    /// `?1` id, `?2` token, `?3` error, `?4` next run, `?5` now, `?6` the
    /// report's keep (ms) for a dead task → the state it took (retrying, or
    /// dead on the last attempt).
    pub retry: String,
    /// `?1` id, `?2` token, `?3` error, `?4` now, `?5` the report's keep (ms).
    pub dead_letter: String,
    /// `?1` id, `?2` token, `?3` reason, `?4` now, `?5` the report's keep (ms).
    pub discard: String,
    /// `?1` id, `?2` token, `?3` now.
    pub release: String,
    /// `?1` id, `?2` error, `?3` now: dead-letters a running task whatever its
    /// token (a reserved row that cannot be decoded).
    pub dead_letter_any: String,
    /// `?1` id, `?2` now.
    pub cancel: String,
    /// `?1` id → state code, queue and handler.
    pub state_of: String,
    /// `?1` id → queue and handler.
    pub names_of: String,
    /// `?1` id → the record.
    pub get: String,
    /// `?1` now: running tasks whose lease ran out → id, the state each
    /// took (available again, or dead on the last attempt) and queue.
    pub expire: String,
    /// `?1` cutoff: completed and cancelled tasks finished before it, with
    /// no expiry of their own → the queue, state and handler of each.
    pub prune_finished: String,
    /// `?1` cutoff: dead tasks finished before it, with no expiry of their
    /// own → the queue and handler of each.
    pub prune_dead: String,
    /// `?1` now: finished tasks whose own expiry has passed → the queue,
    /// state and handler of each.
    pub prune_expired: String,
    /// `?1` id, `?2` now → its queue and handler.
    pub requeue: String,
    /// Deletes every dead task → the queue and handler of each.
    pub purge_all: String,
    /// `?1` queue: deletes its dead tasks → the queue and handler of each.
    pub purge_queue: String,
}

impl Sql {
    fn build() -> Sql {
        use Transition as T;
        let unfinished = unfinished_codes();
        let running = T::Complete.source_codes();
        let finish = |set: &str, transition: Transition| {
            format!(
                "UPDATE tasks SET {set}, lease_until = NULL \
                 WHERE id = ?1 AND token = ?2 AND state IN ({})",
                transition.source_codes()
            )
        };
        // A keyed task may start only when it is the oldest unfinished task of
        // its key and no task of its key is running (a requeued dead task can be
        // older than a running one).
        let eligible = format!(
            "(t.ordering_key IS NULL OR (\
               NOT EXISTS (SELECT 1 FROM tasks AS o WHERE o.queue = t.queue \
                 AND o.ordering_key = t.ordering_key AND o.state IN ({unfinished}) \
                 AND o.id < t.id) \
               AND NOT EXISTS (SELECT 1 FROM tasks AS r WHERE r.queue = t.queue \
                 AND r.ordering_key = t.ordering_key AND r.state IN ({running}))))"
        );
        let last_attempt = "attempts >= max_attempts";
        Sql {
            find_unique: format!(
                "SELECT id FROM tasks WHERE queue = ?1 AND unique_key = ?2 \
                 AND state IN ({unfinished})"
            ),
            insert: INSERT_ROWS
                .iter()
                .map(|&rows| {
                    let values =
                        vec!["(?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
                    let text = format!(
                        "INSERT OR FAIL INTO tasks (queue, handler, state, priority, attempts, \
                         max_attempts, run_at, timeout_ms, unique_key, ordering_key, \
                         created_at, payload, trace, keep_ms) VALUES {values}"
                    );
                    (rows, text)
                })
                .collect(),
            // The index's own terms, then the one state: a statement per
            // source state tells the kept counts where each task came from.
            promote_due: T::Due
                .sources()
                .iter()
                .map(|&from| {
                    let text = format!(
                        "UPDATE OR FAIL tasks SET state = {} WHERE state IN ({}) AND state = {} \
                         AND run_at <= ?1 RETURNING queue, handler",
                        T::Due.target().code(),
                        T::Due.source_codes(),
                        from.code()
                    );
                    (from, text)
                })
                .collect(),
            any_due: format!(
                "SELECT 1 FROM tasks WHERE state IN ({}) AND run_at <= ?1 LIMIT 1",
                T::Due.source_codes()
            ),
            pick: format!(
                "SELECT t.id, t.token, t.handler, t.payload, t.attempts, t.max_attempts, \
                   t.timeout_ms, t.ordering_key, t.created_at, t.run_at, t.trace \
                 FROM tasks AS t \
                 WHERE t.queue = ?1 AND t.state IN ({}) AND {eligible} \
                 ORDER BY t.priority DESC, t.id LIMIT ?2",
                T::Reserve.source_codes()
            ),
            take: BATCH_ROWS
                .iter()
                .map(|&ids| {
                    let list = vec!["?"; ids].join(", ");
                    let text = format!(
                        "UPDATE OR FAIL tasks SET state = {}, attempts = attempts + 1, \
                         token = token + 1, lease_until = ?1, worker = ?2, started_at = ?3 \
                         WHERE id IN ({list}) AND state IN ({})",
                        T::Reserve.target().code(),
                        T::Reserve.source_codes()
                    );
                    (ids, text)
                })
                .collect(),
            renew: format!(
                "UPDATE tasks SET lease_until = ?3 WHERE id = ?1 AND token = ?2 \
                 AND state IN ({running})"
            ),
            complete: finish(
                &format!(
                    "state = {}, result = ?3, finished_at = ?4, error = NULL, \
                     expires_at = ?4 + COALESCE(keep_ms, ?5)",
                    T::Complete.target().code()
                ),
                T::Complete,
            ),
            complete_many: BATCH_ROWS
                .iter()
                .map(|&rows| {
                    let values = vec!["(?, ?, ?)"; rows].join(", ");
                    let text = format!(
                        "UPDATE OR FAIL tasks SET state = {}, result = v.column3, finished_at = ?1, \
                         lease_until = NULL, error = NULL, expires_at = ?1 + keep_ms FROM (VALUES {values}) AS v \
                         WHERE tasks.id = v.column1 AND tasks.token = v.column2 \
                         AND tasks.state IN ({}) RETURNING tasks.id",
                        T::Complete.target().code(),
                        T::Complete.source_codes()
                    );
                    (rows, text)
                })
                .collect(),
            retry: finish(
                &format!(
                    "state = CASE WHEN {last_attempt} THEN {dead} ELSE {retrying} END, \
                     error = ?3, \
                     run_at = CASE WHEN {last_attempt} THEN run_at ELSE ?4 END, \
                     finished_at = CASE WHEN {last_attempt} THEN ?5 ELSE NULL END, \
                     expires_at = CASE WHEN {last_attempt} THEN ?5 + COALESCE(keep_ms, ?6) \
                       ELSE NULL END, \
                     history = {history}",
                    dead = T::DeadLetter.target().code(),
                    retrying = T::Retry.target().code(),
                    history = append_history(
                        "?5",
                        &format!("CASE WHEN {last_attempt} THEN 'dead' ELSE 'failed' END"),
                        "?3"
                    ),
                ),
                T::Retry,
            ) + " RETURNING state",
            dead_letter: finish(
                &format!(
                    "state = {}, error = ?3, finished_at = ?4, \
                     expires_at = ?4 + COALESCE(keep_ms, ?5), history = {}",
                    T::DeadLetter.target().code(),
                    append_history("?4", "'dead'", "?3"),
                ),
                T::DeadLetter,
            ),
            discard: finish(
                &format!(
                    "state = {}, error = ?3, finished_at = ?4, \
                     expires_at = ?4 + COALESCE(keep_ms, ?5), history = {}",
                    T::Discard.target().code(),
                    append_history("?4", "'discarded'", "?3"),
                ),
                T::Discard,
            ),
            release: finish(
                &format!(
                    "state = {}, attempts = MAX(attempts - 1, 0), history = {}",
                    T::Release.target().code(),
                    append_history("?3", "'released'", "NULL"),
                ),
                T::Release,
            ),
            dead_letter_any: format!(
                "UPDATE tasks SET state = {}, error = ?2, finished_at = ?3, lease_until = NULL, \
                 expires_at = ?3 + keep_ms, history = {} WHERE id = ?1 AND state IN ({}) RETURNING CAST(handler AS TEXT)",
                T::DeadLetter.target().code(),
                append_history("?3", "'dead'", "?2"),
                T::DeadLetter.source_codes()
            ),
            // A running task's attempt is settled as cancelled and its lease
            // ended (every column on the right reads the row before the update).
            cancel: format!(
                "UPDATE tasks SET state = {cancelled}, finished_at = ?2, lease_until = NULL, \
                 expires_at = ?2 + keep_ms, \
                 error = CASE WHEN state = {running} THEN '{CANCELLED_WHILE_RUNNING}' \
                   ELSE error END, \
                 history = CASE WHEN state = {running} THEN {history} ELSE history END \
                 WHERE id = ?1 AND state IN ({sources})",
                cancelled = T::Cancel.target().code(),
                running = TaskState::Running.code(),
                history = append_history("?2", "'cancelled'", "NULL"),
                sources = T::Cancel.source_codes()
            ),
            state_of: "SELECT state, queue, handler FROM tasks WHERE id = ?1".to_string(),
            names_of: "SELECT queue, handler FROM tasks WHERE id = ?1".to_string(),
            get: format!("SELECT {RECORD_COLUMNS} FROM tasks WHERE id = ?1"),
            expire: format!(
                "UPDATE tasks SET \
                 state = CASE WHEN {last_attempt} THEN {final_} ELSE {again} END, \
                 error = CASE WHEN {last_attempt} THEN '{final_msg}' ELSE '{again_msg}' END, \
                 finished_at = CASE WHEN {last_attempt} THEN ?1 ELSE NULL END, \
                 expires_at = CASE WHEN {last_attempt} THEN ?1 + keep_ms ELSE NULL END, \
                 lease_until = NULL, history = {history} \
                 WHERE state IN ({expiring}) AND lease_until < ?1 \
                 RETURNING id, state, queue, handler",
                history = append_history("?1", "'expired'", "NULL"),
                expiring = T::Expire.source_codes(),
                final_ = T::ExpireFinal.target().code(),
                again = T::Expire.target().code(),
                final_msg = LEASE_EXPIRED_FINAL,
                again_msg = LEASE_EXPIRED,
            ),
            prune_finished: format!(
                "DELETE FROM tasks WHERE state IN ({}) AND finished_at < ?1 \
                 AND expires_at IS NULL RETURNING queue, state, handler",
                codes(&[TaskState::Completed, TaskState::Cancelled])
            ),
            prune_dead: format!(
                "DELETE FROM tasks WHERE state IN ({}) AND finished_at < ?1 \
                 AND expires_at IS NULL RETURNING queue, handler",
                codes(&[TaskState::Dead])
            ),
            prune_expired: "DELETE FROM tasks WHERE expires_at < ?1 \
                 RETURNING queue, state, handler"
                .to_string(),
            requeue: format!(
                "UPDATE tasks SET state = {}, attempts = 0, finished_at = NULL, expires_at = NULL, \
                 lease_until = NULL, run_at = ?2 WHERE id = ?1 AND state IN ({}) \
                 RETURNING queue, handler",
                T::Requeue.target().code(),
                T::Requeue.source_codes()
            ),
            purge_all: format!(
                "DELETE FROM tasks WHERE state IN ({}) RETURNING queue, handler",
                codes(&[TaskState::Dead])
            ),
            purge_queue: format!(
                "DELETE FROM tasks WHERE state IN ({}) AND queue = ?1 RETURNING queue, handler",
                codes(&[TaskState::Dead])
            ),
        }
    }
}

/// Runs `items` through the statements `sized` offers (one per chunk size,
/// largest first, as `INSERT_ROWS` and `BATCH_ROWS` make them): as few
/// statements as the sizes allow, each chunk handed to `run` with its
/// prepared statement. Every size list ends in 1, so every item is run.
pub(crate) fn in_chunks<T>(
    conn: &rusqlite::Connection,
    sized: &[(usize, String)],
    mut items: &[T],
    mut run: impl FnMut(&mut rusqlite::CachedStatement<'_>, &[T]) -> Result<(), conveyor_core::Error>,
) -> Result<(), conveyor_core::Error> {
    for (size, text) in sized {
        if items.len() < *size {
            continue;
        }
        let mut stmt = conn.prepare_cached(text).map_err(crate::error::db_err)?;
        while items.len() >= *size {
            let (chunk, rest) = items.split_at(*size);
            items = rest;
            run(&mut stmt, chunk)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

    use super::sql;

    /// The query plan of `text`, one detail line per step.
    fn plan(conn: &rusqlite::Connection, text: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {text}")).unwrap();
        let count = stmt.parameter_count();
        let params: Vec<i64> = vec![0; count];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
    }

    /// The hot statements find their rows through the partial indexes, so
    /// their cost does not grow with the number of finished tasks kept.
    #[test]
    fn hot_statements_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::schema::open(&dir.path().join("plan.db")).unwrap();
        let sql = sql();
        let mut cases = vec![
            (&sql.find_unique, vec!["tasks_unique"]),
            (
                &sql.pick,
                vec!["tasks_ready", "tasks_ordering ", "tasks_ordering_running"],
            ),
            (&sql.expire, vec!["tasks_leased"]),
            (&sql.prune_finished, vec!["tasks_finished"]),
            (&sql.prune_dead, vec!["tasks_finished"]),
            (&sql.prune_expired, vec!["tasks_expiring"]),
        ];
        for (_, text) in &sql.promote_due {
            cases.push((text, vec!["tasks_due"]));
        }
        cases.push((&sql.any_due, vec!["tasks_due"]));
        for (text, indexes) in cases {
            let plan = plan(&conn, text);
            for index in indexes {
                assert!(
                    plan.contains(index),
                    "{text}\ndoes not use {index}:\n{plan}"
                );
            }
            assert!(
                !plan.contains("SCAN tasks"),
                "{text}\nscans the table:\n{plan}"
            );
        }
    }
}
