//! Renewing: each lease still held under its token is extended.

use std::time::Duration;

use conveyor_core::{Error, Lease};
use rusqlite::params;

use super::Store;
use crate::error::db_err;
use crate::row::lease_params;
use crate::sql::sql;

impl Store {
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
}
