//! Renewing leases: one statement over arrays of ids and tokens extends
//! each lease still held under its token.

use std::collections::HashSet;
use std::time::Duration;

use conveyor_core::{Error, Lease};

use super::PostgresBackend;
use crate::error::db;
use crate::row::{col, param_id};

impl PostgresBackend {
    /// The body of `Backend::renew`.
    pub(super) async fn renew_leases(
        &self,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<bool>, Error> {
        let what = "renewing leases";
        let until = self.inner.clock.now().plus(lease).as_millis();
        let mut ids = Vec::with_capacity(leases.len());
        let mut tokens = Vec::with_capacity(leases.len());
        for l in leases {
            if let (Some(id), Ok(token)) = (param_id(l.id), i64::try_from(l.token)) {
                ids.push(id);
                tokens.push(token);
            }
        }
        if ids.is_empty() {
            return Ok(vec![false; leases.len()]);
        }
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, &self.inner.sql.renew).await?;
        let rows = conn
            .query(&stmt, &[&ids, &tokens, &until])
            .await
            .map_err(|e| db(what, e))?;
        let mut held = HashSet::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = col(r, 0, "id")?;
            let token: i64 = col(r, 1, "token")?;
            held.insert((id, token));
        }
        Ok(leases
            .iter()
            .map(|l| match (param_id(l.id), i64::try_from(l.token)) {
                (Some(id), Ok(token)) => held.contains(&(id, token)),
                _ => false,
            })
            .collect())
    }
}
