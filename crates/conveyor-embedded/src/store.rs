//! The backend's operations as SQL on one connection, each run inside a
//! transaction that the database thread (`crate::db_thread`) opened.
//!
//! Every method is one operation of the [`Backend`](conveyor_core::Backend)
//! contract with its exact semantics; none of them begins or commits, so the
//! thread can put many callers' operations into one transaction (group commit).
//! Times come from the injected [`Clock`]. Values read back from the file are
//! checked, never trusted: a row this crate could not have written (an unknown
//! state code, a negative count, a wrong type) becomes an
//! [`Error::Backend`] naming the task and column, and a reserved row that cannot
//! be decoded is dead-lettered instead of wedging its queue.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::attempt::{decode_history, full_history, LatestAttempt};
use conveyor_core::{
    BackendErrorKind, Clock, Enqueued, Error, Finish, FinishAction, Lease, NewTask, Reserved,
    Retention, TaskId, TaskRecord, TaskState, Timestamp, TraceContext, Transition,
};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use crate::completion_batch::CompletionBatch;
use crate::error::db_err;
use crate::held_names::{HeldNames, Names};
use crate::sql::{in_chunks, sql, INSERT_PARAMS};
use crate::tally::Tally;

/// The connection, the clock, and what the current transaction did that
/// waiting workers and result waiters should hear about.
pub(crate) struct Store {
    /// The connection (owned by the database thread).
    pub(crate) conn: Connection,
    clock: Arc<dyn Clock>,
    /// Set when an operation made tasks available; the thread wakes waiting
    /// workers after the commit and clears it.
    pub(crate) woke: bool,
    /// Tasks the transaction brought to a final state; the thread posts them
    /// for result waiters after the commit and clears it. (A request rolled
    /// back to its savepoint leaves its ids here: a spurious wake-up, which
    /// result waiters allow.)
    pub(crate) finished: Vec<TaskId>,
    /// Count changes of the running request, written at its end.
    pub(crate) tally: Tally,
    /// Queue and handler of the tasks this store reserved.
    held: HeldNames,
}

impl Store {
    /// A store on an opened connection.
    pub(crate) fn new(conn: Connection, clock: Arc<dyn Clock>) -> Self {
        Self {
            conn,
            clock,
            woke: false,
            finished: Vec::new(),
            tally: Tally::default(),
            held: HeldNames::default(),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Inserts the tasks (all validated first), returning the existing task for
    /// a unique key already held by an unfinished task.
    pub(crate) fn enqueue_many(&mut self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        for task in &tasks {
            task.validate()?;
        }
        let now = self.now();
        let mut out = Vec::with_capacity(tasks.len());
        // Tasks without a unique key go in together; a keyed task first looks
        // for its holder, which may be a task of this very batch.
        let mut plain: Vec<&NewTask> = Vec::new();
        for task in &tasks {
            let Some(key) = &task.unique_key else {
                plain.push(task);
                continue;
            };
            self.insert_rows(&plain, now, &mut out)?;
            plain.clear();
            let existing: Option<i64> = self
                .conn
                .prepare_cached(&sql().find_unique)
                .and_then(|mut s| s.query_row((&task.queue, key), |r| r.get(0)).optional())
                .map_err(db_err)?;
            match existing {
                Some(id) => out.push(Enqueued {
                    id: task_id(id)?,
                    duplicate: true,
                }),
                None => self.insert_rows(&[task], now, &mut out)?,
            }
        }
        self.insert_rows(&plain, now, &mut out)?;
        Ok(out)
    }

    /// Inserts `tasks` in multi-row statements, appending their ids to `out`.
    fn insert_rows(
        &mut self,
        tasks: &[&NewTask],
        now: Timestamp,
        out: &mut Vec<Enqueued>,
    ) -> Result<(), Error> {
        let (conn, tally, woke) = (&self.conn, &mut self.tally, &mut self.woke);
        in_chunks(conn, &sql().insert, tasks, |stmt, chunk| {
            let mut param = 0;
            let mut bind = |v: &dyn rusqlite::ToSql| {
                param += 1;
                stmt.raw_bind_parameter(param, v)
            };
            for task in chunk {
                let run_at = task.first_run(now);
                let transition = if run_at > now {
                    Transition::Schedule
                } else {
                    *woke = true;
                    Transition::Enqueue
                };
                tally.add(&task.queue, &task.handler, transition.target(), 1);
                bind(&task.queue)
                    .and_then(|()| bind(&task.handler))
                    .and_then(|()| bind(&transition.target().code()))
                    .and_then(|()| bind(&task.priority))
                    .and_then(|()| bind(&task.max_attempts))
                    .and_then(|()| bind(&run_at.0))
                    .and_then(|()| bind(&task.timeout.map(millis)))
                    .and_then(|()| bind(&task.unique_key))
                    .and_then(|()| bind(&task.ordering_key))
                    .and_then(|()| bind(&now.0))
                    .and_then(|()| bind(&task.payload))
                    .and_then(|()| bind(&task.trace.as_ref().map(TraceContext::encode)))
                    .map_err(db_err)?;
            }
            let rows = chunk.len();
            debug_assert_eq!(param, rows * INSERT_PARAMS);
            let inserted = stmt.raw_execute().map_err(db_err)?;
            if inserted != rows {
                return Err(Error::backend_other(format!(
                    "inserted {inserted} rows of {rows}"
                )));
            }
            // One statement numbers its rows consecutively (AUTOINCREMENT:
            // each new id is the largest so far plus one).
            let last = conn.last_insert_rowid();
            let first = last - i64::try_from(rows - 1).unwrap_or(0);
            for id in first..=last {
                out.push(Enqueued {
                    id: task_id(id)?,
                    duplicate: false,
                });
            }
            Ok(())
        })
    }

    /// Promotes due tasks, then reserves up to `max` ready tasks of `queues`
    /// for `worker` (the attempts' worker), of `handlers` only when given
    /// (the others stay ready, in their place).
    pub(crate) fn reserve(
        &mut self,
        queues: &[String],
        max: usize,
        lease: Duration,
        worker: Option<&str>,
        handlers: Option<&[String]>,
    ) -> Result<Vec<Reserved>, Error> {
        if max == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let lease_until = now.plus(lease);
        let sql = sql();
        self.promote_due(now)?;
        let mut gate = self.admission(now)?;
        let mut out = Vec::with_capacity(max.min(1024));
        let mut unreadable = Vec::new();
        for queue in queues {
            let remaining = max - (out.len() + unreadable.len());
            if remaining == 0 {
                break;
            }
            // Read inside this write transaction: a pause committed before
            // it began is seen, one after it waits for its end.
            if self.is_paused(queue)? {
                continue;
            }
            // With limited handlers some candidates are skipped, so the scan
            // reads on (rows come lazily in index order) until enough are taken.
            let limit = if gate.is_empty() && handlers.is_none() {
                to_i64(remaining)
            } else {
                i64::MAX
            };
            let mut stmt = self.conn.prepare_cached(&sql.pick).map_err(db_err)?;
            let mut rows = stmt.query(params![queue, limit]).map_err(db_err)?;
            while let Some(row) = rows.next().map_err(db_err)? {
                if out.len() + unreadable.len() >= max {
                    break;
                }
                let id: i64 = row.get(0).map_err(db_err)?;
                // Read in place: a copy of every name would cost an allocation
                // a task, and without limits there is nothing to ask.
                if !gate.is_empty() || handlers.is_some() {
                    if let Ok(handler) = row.get_ref(2).and_then(|v| Ok(v.as_str()?)) {
                        let wanted = handlers.is_none_or(|hs| hs.iter().any(|h| h == handler));
                        if !wanted || !gate.admit(handler) {
                            continue;
                        }
                    }
                }
                match reserved_from_row(row, queue, lease_until) {
                    Ok(r) => out.push(r),
                    Err(e) => unreadable.push((id, queue, e.to_string())),
                }
            }
        }
        self.store_rates(&gate)?;
        // The picked rows become running; this transaction holds the write
        // lock, so they are exactly as read.
        let ids: Vec<i64> = out
            .iter()
            .filter_map(|r| id_param(r.lease.id))
            .chain(unreadable.iter().map(|(id, _, _)| *id))
            .collect();
        self.take(&ids, lease_until, worker, now)?;
        for r in &out {
            self.tally.moved(
                &r.queue,
                &r.handler,
                TaskState::Available,
                TaskState::Running,
            );
            if let Some(id) = id_param(r.lease.id) {
                self.held.insert(id, &r.queue, &r.handler);
            }
        }
        for (id, queue, why) in unreadable {
            tracing::warn!(task = id, error = %why, "embedded: dead-lettering an unreadable task");
            let handler: Option<String> = self
                .conn
                .prepare_cached(&sql.dead_letter_any)
                .and_then(|mut s| {
                    s.query_row(params![id, format!("unreadable task: {why}"), now.0], |r| {
                        r.get(0)
                    })
                })
                .map_err(db_err)?;
            let handler = handler.unwrap_or_default();
            self.tally
                .moved(queue, &handler, TaskState::Available, TaskState::Dead);
            self.finished.push(task_id(id)?);
        }
        Ok(out)
    }

    /// Marks the picked tasks `ids` running, in statements of `BATCH_ROWS`
    /// ids each.
    fn take(
        &mut self,
        ids: &[i64],
        lease_until: Timestamp,
        worker: Option<&str>,
        now: Timestamp,
    ) -> Result<(), Error> {
        in_chunks(&self.conn, &sql().take, ids, |stmt, chunk| {
            stmt.raw_bind_parameter(1, lease_until.0)
                .and_then(|()| stmt.raw_bind_parameter(2, worker))
                .and_then(|()| stmt.raw_bind_parameter(3, now.0))
                .map_err(db_err)?;
            for (i, id) in chunk.iter().enumerate() {
                stmt.raw_bind_parameter(i + 4, id).map_err(db_err)?;
            }
            let taken = stmt.raw_execute().map_err(db_err)?;
            if taken != chunk.len() {
                return Err(Error::backend_other(format!(
                    "{} of {} picked tasks changed while being reserved",
                    chunk.len() - taken,
                    chunk.len()
                )));
            }
            Ok(())
        })
    }

    /// Extends the leases still held.
    pub(crate) fn renew(&mut self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        let until = self.now().plus(lease);
        let mut stmt = self.conn.prepare_cached(&sql().renew).map_err(db_err)?;
        let mut out = Vec::with_capacity(leases.len());
        for l in leases {
            let held = match lease_params(l) {
                Some((id, token)) => {
                    stmt.execute(params![id, token, until.0]).map_err(db_err)? == 1
                }
                None => false,
            };
            out.push(held);
        }
        Ok(out)
    }

    /// Applies each report whose lease is still held, and enqueues its
    /// follow-ups in the same transaction (the caller's savepoint makes the
    /// whole call one atomic step).
    pub(crate) fn finish(&mut self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        let now = self.now();
        let mut out = Vec::with_capacity(reports.len());
        // Plain completions (no follow-ups) are applied together, in as few
        // statements as the batch sizes allow; any other report first
        // applies the completions before it, so reports apply in order.
        let mut plain = CompletionBatch::default();
        for report in reports {
            let Err(report) = plain.try_add(report) else {
                continue;
            };
            // Not taken: apply the batch, then try again (a second report
            // for an id in the batch now starts the next one).
            self.complete_all(&mut plain, now, &mut out)?;
            if let Err(report) = plain.try_add(report) {
                out.push(self.finish_one(report, now)?);
            }
        }
        self.complete_all(&mut plain, now, &mut out)?;
        Ok(out)
    }

    /// The queue and handler of task `id`: known from its reservation, or
    /// read (the write lock is held, and neither ever changes); `None` when
    /// no such task exists.
    pub(crate) fn names_of(&mut self, id: i64) -> Result<Option<Names>, Error> {
        if let Some(names) = self.held.take(id) {
            return Ok(Some(names));
        }
        let found: Option<(String, String)> = self
            .conn
            .prepare_cached(&sql().names_of)
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(db_err)?;
        Ok(found.map(|(q, h)| (Arc::from(q), Arc::from(h))))
    }

    /// Applies one report if its lease is still held, and enqueues its
    /// follow-ups.
    fn finish_one(&mut self, report: Finish, now: Timestamp) -> Result<Result<(), Error>, Error> {
        let sql = sql();
        let Some((id, token)) = lease_params(&report.lease) else {
            return Ok(Err(Error::StaleLease(report.lease.id)));
        };
        if let Err(e) = report.validate_follow_ups() {
            return Ok(Err(e));
        }
        let Some((queue, handler)) = self.names_of(id)? else {
            return Ok(Err(Error::StaleLease(report.lease.id)));
        };
        let conn = &self.conn;
        let run = |text: &str, p: &[&dyn rusqlite::ToSql]| {
            conn.prepare_cached(text)
                .and_then(|mut s| s.execute(p))
                .map_err(db_err)
        };
        // The state the task took, when the report applied.
        let applied: Option<TaskState> = match &report.action {
            FinishAction::Complete { result } => {
                let n = run(&sql.complete, params![id, token, result, now.0])?;
                (n == 1).then_some(Transition::Complete.target())
            }
            FinishAction::Retry { delay, error } => {
                // The statement decides between retrying and dead.
                let code: Option<i64> = conn
                    .prepare_cached(&sql.retry)
                    .and_then(|mut s| {
                        s.query_row(params![id, token, error, now.plus(*delay).0, now.0], |r| {
                            r.get(0)
                        })
                        .optional()
                    })
                    .map_err(db_err)?;
                code.map(|code| state_from_code(code, id)).transpose()?
            }
            FinishAction::DeadLetter { error } => {
                let n = run(&sql.dead_letter, params![id, token, error, now.0])?;
                (n == 1).then_some(Transition::DeadLetter.target())
            }
            FinishAction::Discard { reason } => {
                let n = run(&sql.discard, params![id, token, reason, now.0])?;
                (n == 1).then_some(Transition::Discard.target())
            }
            FinishAction::Release => {
                let n = run(&sql.release, params![id, token, now.0])?;
                self.woke |= n > 0;
                (n == 1).then_some(Transition::Release.target())
            }
        };
        let Some(state) = applied else {
            return Ok(Err(Error::StaleLease(report.lease.id)));
        };
        self.tally
            .moved(&queue, &handler, TaskState::Running, state);
        if state.is_finished() {
            self.finished.push(report.lease.id);
        }
        if !report.follow_ups.is_empty() {
            self.enqueue_many(report.follow_ups)?;
        }
        Ok(Ok(()))
    }

    /// Cancels a waiting task; otherwise reports its state.
    pub(crate) fn cancel(&mut self, id: TaskId) -> Result<TaskState, Error> {
        let Some(raw) = id_param(id) else {
            return Err(Error::NotFound(id));
        };
        let sql = sql();
        // The write lock is held: the state read is the state cancelled.
        let found: Option<(i64, String, String)> = self
            .conn
            .prepare_cached(&sql.state_of)
            .and_then(|mut s| {
                s.query_row([raw], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(db_err)?;
        let Some((code, queue, handler)) = found else {
            return Err(Error::NotFound(id));
        };
        let state = state_from_code(code, raw)?;
        if !Transition::Cancel.sources().contains(&state) {
            return Ok(state);
        }
        let changed = self
            .conn
            .prepare_cached(&sql.cancel)
            .and_then(|mut s| s.execute(params![raw, self.now().0]))
            .map_err(db_err)?;
        if changed != 1 {
            return Err(Error::backend_other(format!(
                "task {raw} changed while being cancelled"
            )));
        }
        self.tally
            .moved(&queue, &handler, state, Transition::Cancel.target());
        self.finished.push(id);
        Ok(Transition::Cancel.target())
    }

    /// Reads one task.
    pub(crate) fn get(&mut self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        let Some(raw) = id_param(id) else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(&sql().get).map_err(db_err)?;
        let mut rows = stmt.query([raw]).map_err(db_err)?;
        match rows.next().map_err(db_err)? {
            Some(row) => record_from_row(row).map(Some),
            None => Ok(None),
        }
    }

    /// Running tasks whose lease ran out become available, or dead on their last
    /// attempt.
    pub(crate) fn recover_expired(&mut self) -> Result<u64, Error> {
        let now = self.now();
        let mut stmt = self.conn.prepare_cached(&sql().expire).map_err(db_err)?;
        let mut rows = stmt.query([now.0]).map_err(db_err)?;
        let dead = Transition::ExpireFinal.target().code();
        let (mut n, mut again) = (0u64, false);
        while let Some(row) = rows.next().map_err(db_err)? {
            n += 1;
            let id: i64 = row.get(0).map_err(db_err)?;
            let state: i64 = row.get(1).map_err(db_err)?;
            let queue: String = row.get(2).map_err(db_err)?;
            let handler: String = row.get(3).map_err(db_err)?;
            let to = state_from_code(state, id)?;
            self.tally.moved(&queue, &handler, TaskState::Running, to);
            if state == dead {
                self.finished.push(task_id(id)?);
            } else {
                again = true;
            }
        }
        self.woke |= again;
        Ok(n)
    }

    /// Deletes finished tasks older than the retention.
    /// Takes or keeps the lead of `role` for `holder` until `ttl` from now.
    pub(crate) fn lead(&mut self, role: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        // The upsert changes a row only when the role is free, ours, or its
        // term has run out: one statement, under the write lock.
        const LEAD: &str = "INSERT INTO leaders (role, holder, until) VALUES (?1, ?2, ?3)
             ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE leaders.holder = excluded.holder OR leaders.until <= ?4";
        let now = self.now();
        let changed = self
            .conn
            .prepare_cached(LEAD)
            .and_then(|mut s| s.execute(params![role, holder, now.plus(ttl).0, now.0]))
            .map_err(db_err)?;
        Ok(changed == 1)
    }

    pub(crate) fn prune(&mut self, retention: Retention) -> Result<u64, Error> {
        let now = self.now();
        let sql = sql();
        let mut n = 0u64;
        let mut stmt = self
            .conn
            .prepare_cached(&sql.prune_finished)
            .map_err(db_err)?;
        let mut rows = stmt
            .query([now.minus(retention.finished).0])
            .map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let queue: String = row.get(0).map_err(db_err)?;
            let code: i64 = row.get(1).map_err(db_err)?;
            let handler: String = row.get(2).map_err(db_err)?;
            self.tally
                .add(&queue, &handler, state_from_code(code, 0)?, -1);
            n += 1;
        }
        drop(rows);
        drop(stmt);
        let pruned_dead = self.delete_dead(&sql.prune_dead, &[&now.minus(retention.dead).0])?;
        Ok(n + pruned_dead)
    }

    /// Runs a statement deleting dead tasks (returning each one's queue),
    /// counting them out. Returns how many.
    fn delete_dead(&mut self, text: &str, p: &[&dyn rusqlite::ToSql]) -> Result<u64, Error> {
        let mut stmt = self.conn.prepare_cached(text).map_err(db_err)?;
        let mut rows = stmt.query(p).map_err(db_err)?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(db_err)? {
            let queue: String = row.get(0).map_err(db_err)?;
            let handler: String = row.get(1).map_err(db_err)?;
            self.tally.add(&queue, &handler, TaskState::Dead, -1);
            n += 1;
        }
        Ok(n)
    }

    /// Scheduled and retrying tasks that are due become available.
    fn promote_due(&mut self, now: Timestamp) -> Result<(), Error> {
        // One index seek says whether anything is due; most reservations
        // find nothing and skip the updates.
        let due: Option<i64> = self
            .conn
            .prepare_cached(&sql().any_due)
            .and_then(|mut s| s.query_row([now.0], |r| r.get(0)).optional())
            .map_err(db_err)?;
        if due.is_none() {
            return Ok(());
        }
        for (from, text) in &sql().promote_due {
            let mut stmt = self.conn.prepare_cached(text).map_err(db_err)?;
            let mut rows = stmt.query([now.0]).map_err(db_err)?;
            while let Some(row) = rows.next().map_err(db_err)? {
                let queue: String = row.get(0).map_err(db_err)?;
                let handler: String = row.get(1).map_err(db_err)?;
                self.tally
                    .moved(&queue, &handler, *from, Transition::Due.target());
            }
        }
        Ok(())
    }

    /// Puts dead tasks back to run. A task whose unique key is meanwhile held by
    /// another unfinished task stays dead (the key admits one unfinished task).
    pub(crate) fn requeue_dead(&mut self, ids: &[TaskId]) -> Result<u64, Error> {
        let now = self.now();
        let mut stmt = self.conn.prepare_cached(&sql().requeue).map_err(db_err)?;
        let mut moved = 0u64;
        for &id in ids {
            let Some(raw) = id_param(id) else { continue };
            match stmt
                .query_row(params![raw, now.0], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()
            {
                Ok(Some((queue, handler))) => {
                    moved += 1;
                    let to = Transition::Requeue.target();
                    self.tally.moved(&queue, &handler, TaskState::Dead, to);
                }
                Ok(None) => {}
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    tracing::warn!(
                        task = raw,
                        "embedded: not requeueing a dead task: its unique key is held by an \
                         unfinished task"
                    );
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        self.woke |= moved > 0;
        Ok(moved)
    }

    /// Deletes dead tasks.
    pub(crate) fn purge_dead(&mut self, queue: Option<&str>) -> Result<u64, Error> {
        let sql = sql();
        match queue {
            Some(q) => self.delete_dead(&sql.purge_queue, &[&q]),
            None => self.delete_dead(&sql.purge_all, &[]),
        }
    }
}

/// Duration as whole milliseconds (saturating).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn id_param(id: TaskId) -> Option<i64> {
    i64::try_from(id.0).ok()
}

pub(crate) fn lease_params(lease: &Lease) -> Option<(i64, i64)> {
    Some((id_param(lease.id)?, i64::try_from(lease.token).ok()?))
}

pub(crate) fn task_id(raw: i64) -> Result<TaskId, Error> {
    u64::try_from(raw)
        .map(TaskId)
        .map_err(|_| Error::backend_other(format!("the file holds a task with negative id {raw}")))
}

fn state_from_code(code: i64, id: i64) -> Result<TaskState, Error> {
    TaskState::from_code(code).ok_or_else(|| {
        Error::backend(
            BackendErrorKind::Data,
            format!(
            "task {id}: unknown state code {code} in the file (written by a newer conveyor, or \
             edited by hand?)"
        ),
        )
    })
}

/// Reads column `idx` of the row of task `id`, naming both on failure.
fn col<T: rusqlite::types::FromSql>(row: &Row<'_>, idx: usize, id: i64) -> Result<T, Error> {
    row.get(idx).map_err(|e| {
        let name = row.as_ref().column_name(idx).unwrap_or("?");
        Error::backend_other(format!("task {id}: column {name}: {e}"))
    })
}

/// A non-negative count column as `u32`.
fn count(row: &Row<'_>, idx: usize, id: i64) -> Result<u32, Error> {
    let raw: i64 = col(row, idx, id)?;
    u32::try_from(raw).map_err(|_| {
        let name = row.as_ref().column_name(idx).unwrap_or("?");
        Error::backend_other(format!("task {id}: column {name}: {raw} is out of range"))
    })
}

/// One row of the pick statement, as the reservation about to be made of it
/// (attempt count and token one higher).
fn reserved_from_row(
    row: &Row<'_>,
    queue: &str,
    lease_until: Timestamp,
) -> Result<Reserved, Error> {
    let id: i64 = row.get(0).map_err(db_err)?;
    let token: i64 = col(row, 1, id)?;
    let token = token
        .checked_add(1)
        .and_then(|t| u64::try_from(t).ok())
        .ok_or_else(|| {
            Error::backend_other(format!("task {id}: lease token {token} out of range"))
        })?;
    let attempt = count(row, 4, id)?
        .checked_add(1)
        .ok_or_else(|| Error::backend_other(format!("task {id}: attempt count out of range")))?;
    let timeout_ms: Option<i64> = col(row, 6, id)?;
    Ok(Reserved {
        lease: Lease::new(task_id(id)?, token),
        queue: queue.to_string(),
        handler: col(row, 2, id)?,
        payload: col(row, 3, id)?,
        attempt,
        max_attempts: count(row, 5, id)?,
        timeout: timeout_ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        ordering_key: col(row, 7, id)?,
        enqueued_at: Timestamp(col(row, 8, id)?),
        due_at: Timestamp(col(row, 9, id)?),
        lease_until,
        trace: TraceContext::from_stored(col::<Option<String>>(row, 10, id)?.as_deref()),
    })
}

/// A row of [`crate::sql::RECORD_COLUMNS`].
pub(crate) fn record_from_row(row: &Row<'_>) -> Result<TaskRecord, Error> {
    let id: i64 = row.get(0).map_err(db_err)?;
    let priority: i64 = col(row, 5, id)?;
    let state = state_from_code(col(row, 3, id)?, id)?;
    let attempts = count(row, 6, id)?;
    let finished_at = col::<Option<i64>>(row, 14, id)?.map(Timestamp);
    let worker: Option<String> = col(row, 16, id)?;
    // A history column that is not text reads as no history.
    let stored = row.get::<_, Option<String>>(18).ok().flatten();
    let history = full_history(
        decode_history(stored.as_deref()),
        LatestAttempt {
            state,
            attempts,
            worker: worker.as_deref(),
            started_at: col::<Option<i64>>(row, 17, id)?.map(Timestamp),
            finished_at,
        },
    );
    Ok(TaskRecord {
        id: task_id(id)?,
        queue: col(row, 1, id)?,
        handler: col(row, 2, id)?,
        state,
        payload: col(row, 4, id)?,
        priority: i32::try_from(priority).map_err(|_| {
            Error::backend_other(format!("task {id}: priority {priority} out of range"))
        })?,
        attempts,
        max_attempts: count(row, 7, id)?,
        run_at: Timestamp(col(row, 8, id)?),
        unique_key: col(row, 9, id)?,
        ordering_key: col(row, 10, id)?,
        result: col(row, 11, id)?,
        error: col(row, 12, id)?,
        created_at: Timestamp(col(row, 13, id)?),
        finished_at,
        trace: TraceContext::from_stored(col::<Option<String>>(row, 15, id)?.as_deref()),
        history,
    })
}
