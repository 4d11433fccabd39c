//! The worker registry in the file: the `workers` table (schema v4), one row
//! per worker with its latest heartbeat as JSON.

use conveyor_core::async_trait;
use conveyor_core::{Error, Registry, Timestamp, WorkerInfo};
use rusqlite::params;

use crate::backend::EmbeddedBackend;
use crate::error::db_err;
use crate::store::Store;

impl Store {
    fn heartbeat(&mut self, worker: &WorkerInfo) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO workers (id, heartbeat_at, info) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                                                info = excluded.info",
            )
            .and_then(|mut s| {
                s.execute(params![worker.id, worker.heartbeat_at.0, worker.to_json()])
            })
            .map_err(db_err)?;
        Ok(())
    }

    fn workers(&mut self, since: Timestamp) -> Result<Vec<WorkerInfo>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT info FROM workers WHERE heartbeat_at >= ?1 ORDER BY heartbeat_at DESC, id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![since.0], |row| row.get::<_, String>(0))
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(WorkerInfo::from_json(&row.map_err(db_err)?)?);
        }
        Ok(out)
    }

    fn forget_workers(&mut self, before: Timestamp) -> Result<u64, Error> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM workers WHERE heartbeat_at < ?1")
            .and_then(|mut s| s.execute(params![before.0]))
            .map_err(db_err)?;
        Ok(n as u64)
    }
}

#[async_trait]
impl Registry for EmbeddedBackend {
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), Error> {
        let worker = worker.clone();
        self.call(true, 1, move |s| s.heartbeat(&worker)).await
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>, Error> {
        self.call(false, 1, move |s| s.workers(since)).await
    }

    async fn forget_workers(&self, before: Timestamp) -> Result<u64, Error> {
        self.call(true, 1, move |s| s.forget_workers(before)).await
    }
}
