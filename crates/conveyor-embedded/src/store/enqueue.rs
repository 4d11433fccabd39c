//! Enqueueing: tasks without a unique key inserted together in multi-row
//! statements; a keyed task first looks for the unfinished task holding its
//! key (which may be one of the same batch).

use conveyor_core::{Enqueued, Error, NewTask, Timestamp, TraceContext, Transition};
use rusqlite::OptionalExtension;

use super::{millis, Store};
use crate::error::db_err;
use crate::row::task_id;
use crate::sql::{in_chunks, sql, INSERT_PARAMS};

impl Store {
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
                    .and_then(|()| bind(&task.keep.map(millis)))
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
}
