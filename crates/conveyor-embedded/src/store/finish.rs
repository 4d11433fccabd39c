//! Finishing: each report applied where its lease is still held, in order,
//! with its follow-ups enqueued in the same transaction; plain completions
//! go together (`completion_batch`).

use std::sync::Arc;

use conveyor_core::{Error, Finish, FinishAction, TaskState, Timestamp, Transition};
use rusqlite::{params, OptionalExtension};

use super::completion_batch::CompletionBatch;
use super::{millis, Store};
use crate::error::db_err;
use crate::held_names::Names;
use crate::row::{lease_params, state_from_code};
use crate::sql::sql;

impl Store {
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
            let Some(report) = plain.try_add(report) else {
                continue;
            };
            // Not taken: apply the batch, then try again (a second report
            // for an id in the batch now starts the next one).
            self.complete_all(&mut plain, now, &mut out)?;
            if let Some(report) = plain.try_add(report) {
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
        // The report's keep for a task that finishes completed or dead.
        let keep = |state: TaskState| report.retention.map(|r| millis(r.for_state(state)));
        let (keep_done, keep_dead) = (keep(TaskState::Completed), keep(TaskState::Dead));
        // The state the task took, when the report applied.
        let applied: Option<TaskState> = match &report.action {
            FinishAction::Complete { result } => {
                let n = run(&sql.complete, params![id, token, result, now.0, keep_done])?;
                (n == 1).then_some(Transition::Complete.target())
            }
            FinishAction::Retry { delay, error } => {
                // The statement decides between retrying and dead.
                let code: Option<i64> = conn
                    .prepare_cached(&sql.retry)
                    .and_then(|mut s| {
                        s.query_row(
                            params![id, token, error, now.plus(*delay).0, now.0, keep_dead],
                            |r| r.get(0),
                        )
                        .optional()
                    })
                    .map_err(db_err)?;
                code.map(|code| state_from_code(code, id)).transpose()?
            }
            FinishAction::DeadLetter { error } => {
                let n = run(
                    &sql.dead_letter,
                    params![id, token, error, now.0, keep_dead],
                )?;
                (n == 1).then_some(Transition::DeadLetter.target())
            }
            FinishAction::Discard { reason } => {
                let keep = keep(Transition::Discard.target());
                let n = run(&sql.discard, params![id, token, reason, now.0, keep])?;
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
}
