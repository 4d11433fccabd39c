//! Kept counts of tasks per queue, handler and state.
//!
//! Counting a million rows for every dashboard refresh takes SQLite close to
//! a second, so the file keeps the counts in `task_counts` (schema version 7)
//! and [`crate::store::Store`] updates them in the same transaction as the
//! tasks. Not with triggers: a trigger runs once per row, and measured it
//! doubled the CPU time of the hot path. Every statement that moves tasks
//! between states already knows (or returns) each row's queue and states, so
//! the store adds them up here as it goes, and [`Tally::flush`] writes one
//! upsert per queue, handler and state the whole transaction touched, just
//! before its `COMMIT` (a group commit of many requests pays a few small
//! writes in all, measured cheaper than a flush per request); a request
//! rolled back to its savepoint takes its counts with it
//! ([`Tally::drop_request`]).
//!
//! Every process sharing the file runs this code (a file is refused by an
//! older conveyor once its schema is past the version that one knows), and
//! the counts are written under the same write lock as the rows, so they
//! never drift. `tests/kept_counts.rs` checks them against a recount after
//! every kind of change.

use conveyor_core::{Error, TaskState};
use rusqlite::{params, Connection};

use crate::error::db_err;

/// Count changes not yet written, per queue, handler and state: those of
/// the running request, and those of the transaction's requests that
/// succeeded.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    request: Vec<(String, String, TaskState, i64)>,
    batch: Vec<(String, String, TaskState, i64)>,
}

/// Adds `n` to the entry of `key` in `changes`.
fn add_to(
    changes: &mut Vec<(String, String, TaskState, i64)>,
    queue: &str,
    handler: &str,
    state: TaskState,
    n: i64,
) {
    match changes
        .iter_mut()
        .find(|(q, h, s, _)| *s == state && q == queue && h == handler)
    {
        Some((_, _, _, total)) => *total += n,
        None => changes.push((queue.to_string(), handler.to_string(), state, n)),
    }
}

impl Tally {
    /// Adds `n` (negative: removes) tasks of `queue` and `handler` in `state`.
    pub(crate) fn add(&mut self, queue: &str, handler: &str, state: TaskState, n: i64) {
        if n != 0 {
            add_to(&mut self.request, queue, handler, state, n);
        }
    }

    /// One task of `queue` and `handler` moved from `from` to `to`.
    pub(crate) fn moved(&mut self, queue: &str, handler: &str, from: TaskState, to: TaskState) {
        if from != to {
            self.add(queue, handler, from, -1);
            self.add(queue, handler, to, 1);
        }
    }

    /// The change to the count of `handler`'s tasks in `state`, over every
    /// queue, that this transaction made and has not written yet.
    pub(crate) fn unwritten(&self, handler: &str, state: TaskState) -> i64 {
        self.request
            .iter()
            .chain(&self.batch)
            .filter(|(_, h, s, _)| *s == state && h == handler)
            .map(|(_, _, _, n)| n)
            .sum()
    }

    /// The running request succeeded: its changes join the transaction's.
    pub(crate) fn keep_request(&mut self) {
        for (queue, handler, state, n) in self.request.drain(..) {
            add_to(&mut self.batch, &queue, &handler, state, n);
        }
    }

    /// The running request was rolled back: its changes are forgotten.
    pub(crate) fn drop_request(&mut self) {
        self.request.clear();
    }

    /// Forgets every change (the transaction was rolled back, or begins).
    pub(crate) fn clear(&mut self) {
        self.request.clear();
        self.batch.clear();
    }

    /// Writes the transaction's changes into `task_counts` (just before its
    /// `COMMIT`) and forgets them.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<(), Error> {
        self.keep_request();
        if self.batch.is_empty() {
            return Ok(());
        }
        const UPSERT: &str = "INSERT INTO task_counts (queue, handler, state, n)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (queue, handler, state) DO UPDATE SET n = n + excluded.n";
        let mut stmt = conn.prepare_cached(UPSERT).map_err(db_err)?;
        for (queue, handler, state, n) in self.batch.drain(..) {
            if n != 0 {
                stmt.execute(params![queue, handler, state.code(), n])
                    .map_err(db_err)?;
            }
        }
        Ok(())
    }
}
