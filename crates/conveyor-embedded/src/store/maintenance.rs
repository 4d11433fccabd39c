//! Maintenance: expired leases recovered, old tasks pruned, and the lead
//! of a role taken or kept.

use std::time::Duration;

use conveyor_core::{Error, Retention, TaskState, Timestamp, Transition};
use rusqlite::params;

use super::Store;
use crate::error::db_err;
use crate::row::{state_from_code, task_id};
use crate::sql::sql;

impl Store {
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

    /// Deletes finished tasks older than the retention.
    pub(crate) fn prune(&mut self, retention: Retention) -> Result<u64, Error> {
        let now = self.now();
        let sql = sql();
        let n = self.delete_finished(&sql.prune_finished, now.minus(retention.finished))?
            + self.delete_finished(&sql.prune_expired, now)?;
        let pruned_dead = self.delete_dead(&sql.prune_dead, &[&now.minus(retention.dead).0])?;
        self.prune_workflows(now.minus(retention.finished), now.minus(retention.dead))?;
        Ok(n + pruned_dead)
    }

    /// Runs a statement deleting finished tasks of any state (returning each
    /// one's queue, state and handler) with `at` its one parameter, counting
    /// them out. Returns how many.
    fn delete_finished(&mut self, text: &str, at: Timestamp) -> Result<u64, Error> {
        let mut stmt = self.conn.prepare_cached(text).map_err(db_err)?;
        let mut rows = stmt.query([at.0]).map_err(db_err)?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(db_err)? {
            let queue: String = row.get(0).map_err(db_err)?;
            let code: i64 = row.get(1).map_err(db_err)?;
            let handler: String = row.get(2).map_err(db_err)?;
            self.tally
                .add(&queue, &handler, state_from_code(code, 0)?, -1);
            n += 1;
        }
        Ok(n)
    }

    /// Runs a statement deleting dead tasks (returning each one's queue),
    /// counting them out. Returns how many.
    pub(super) fn delete_dead(
        &mut self,
        text: &str,
        p: &[&dyn rusqlite::ToSql],
    ) -> Result<u64, Error> {
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
}
