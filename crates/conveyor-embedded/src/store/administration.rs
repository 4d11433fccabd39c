//! Administration: cancelling a waiting task, requeueing and purging dead
//! tasks.

use conveyor_core::{Error, TaskId, TaskState, Transition};
use rusqlite::{params, ErrorCode, OptionalExtension};

use super::Store;
use crate::error::db_err;
use crate::row::{id_param, state_from_code};
use crate::sql::sql;

impl Store {
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
