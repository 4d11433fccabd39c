//! Plain completions applied together.
//!
//! Most reports a worker sends are completions without follow-ups. One
//! `UPDATE … FROM (VALUES …) RETURNING` completes up to 64 of them: the
//! statement's setup, its binding and its cursors on the table and indexes
//! are paid once per statement instead of once per task, and the returned ids
//! say which reports held their lease. A report for an id already in the
//! batch starts a new one, so two reports for one task apply in order (the
//! second finds the task completed).

use foldhash::{HashSet, HashSetExt};

use conveyor_core::{Error, Finish, FinishAction, TaskId, TaskState, Timestamp, Transition};

use super::Store;
use crate::error::db_err;
use crate::sql::{in_chunks, sql};

/// One plain completion: the lease's id (as given and as a row id), token
/// and the encoded result.
struct Completion {
    lease: TaskId,
    id: i64,
    token: i64,
    result: Option<Vec<u8>>,
}

/// Plain completions waiting to be applied, in report order.
#[derive(Default)]
pub(crate) struct CompletionBatch {
    pending: Vec<Completion>,
    ids: HashSet<i64>,
}

impl CompletionBatch {
    /// Takes `report` if it is a plain completion (no follow-ups, no
    /// retention of its own) of a task not already in the batch; gives it
    /// back otherwise.
    pub(crate) fn try_add(&mut self, report: Finish) -> Option<Finish> {
        let plain = report.follow_ups.is_empty() && report.retention.is_none();
        let lease = match (&report.action, plain) {
            (FinishAction::Complete { .. }, true) => crate::row::lease_params(&report.lease),
            _ => None,
        };
        let Some((id, token)) = lease else {
            return Some(report);
        };
        if !self.ids.insert(id) {
            return Some(report);
        }
        let FinishAction::Complete { result } = report.action else {
            // Checked just above.
            return Some(report);
        };
        self.pending.push(Completion {
            lease: report.lease.id,
            id,
            token,
            result,
        });
        None
    }
}

impl Store {
    /// Applies the batch's completions (each whose lease is still held) and
    /// appends each one's outcome to `out`, in order; the batch is empty after.
    pub(crate) fn complete_all(
        &mut self,
        batch: &mut CompletionBatch,
        now: Timestamp,
        out: &mut Vec<Result<(), Error>>,
    ) -> Result<(), Error> {
        if batch.pending.is_empty() {
            return Ok(());
        }
        let mut applied = HashSet::with_capacity(batch.pending.len());
        in_chunks(
            &self.conn,
            &sql().complete_many,
            &batch.pending,
            |stmt, chunk| {
                stmt.raw_bind_parameter(1, now.0).map_err(db_err)?;
                for (i, c) in chunk.iter().enumerate() {
                    stmt.raw_bind_parameter(2 + 3 * i, c.id)
                        .and_then(|()| stmt.raw_bind_parameter(3 + 3 * i, c.token))
                        .and_then(|()| stmt.raw_bind_parameter(4 + 3 * i, &c.result))
                        .map_err(db_err)?;
                }
                let mut done = stmt.raw_query();
                while let Some(row) = done.next().map_err(db_err)? {
                    applied.insert(row.get::<_, i64>(0).map_err(db_err)?);
                }
                Ok(())
            },
        )?;
        batch.ids.clear();
        for c in std::mem::take(&mut batch.pending) {
            // Taken whether or not it applied, as for any other report.
            let names = self.names_of(c.id)?;
            match names.filter(|_| applied.contains(&c.id)) {
                Some((queue, handler)) => {
                    let to = Transition::Complete.target();
                    self.tally.moved(&queue, &handler, TaskState::Running, to);
                    self.finished.push(c.lease);
                    out.push(Ok(()));
                }
                None => out.push(Err(Error::StaleLease(c.lease))),
            }
        }
        Ok(())
    }
}
