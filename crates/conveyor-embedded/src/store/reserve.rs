//! Reserving: due tasks promoted, then each queue's ready tasks picked in
//! order (paused queues skipped, global limits admitting), marked running
//! under a fresh lease; a picked row that cannot be read is dead-lettered.

use std::time::Duration;

use conveyor_core::{Error, Reserved, TaskState, Timestamp, Transition};
use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::error::db_err;
use crate::row::{id_param, reserved_from_row, task_id};
use crate::sql::{in_chunks, sql};

impl Store {
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
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
