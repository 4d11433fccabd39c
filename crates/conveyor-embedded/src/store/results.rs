//! The result store's read: one task by id, with its result.

use conveyor_core::{Error, TaskId, TaskRecord};

use super::Store;
use crate::error::db_err;
use crate::row::{id_param, record_from_row};
use crate::sql::sql;

impl Store {
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
}
