//! Paused queues in the file: the `paused_queues` table (schema v5), one row
//! per paused queue. A reservation looks each queue up inside its write
//! transaction (SQLite's write lock, shared by every process on the file), so
//! a pause committed before the reservation began always holds it back.

use conveyor_core::{async_trait, validate_queue_name, Error, QueueControl};
use rusqlite::OptionalExtension;

use crate::backend::EmbeddedBackend;
use crate::error::db_err;
use crate::store::Store;

impl Store {
    /// True when `queue` is paused.
    pub(crate) fn is_paused(&mut self, queue: &str) -> Result<bool, Error> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM paused_queues WHERE queue = ?1")
            .and_then(|mut s| s.query_row([queue], |_| Ok(())).optional())
            .map_err(db_err)?
            .is_some())
    }

    fn pause(&mut self, queue: &str) -> Result<bool, Error> {
        let n = self
            .conn
            .prepare_cached("INSERT INTO paused_queues (queue) VALUES (?1) ON CONFLICT DO NOTHING")
            .and_then(|mut s| s.execute([queue]))
            .map_err(db_err)?;
        Ok(n > 0)
    }

    fn resume(&mut self, queue: &str) -> Result<bool, Error> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM paused_queues WHERE queue = ?1")
            .and_then(|mut s| s.execute([queue]))
            .map_err(db_err)?;
        // Waiting workers of this process look again once this commits.
        self.woke |= n > 0;
        Ok(n > 0)
    }

    fn paused(&mut self) -> Result<Vec<String>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT queue FROM paused_queues ORDER BY queue")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(db_err)?;
        rows.map(|r| r.map_err(db_err)).collect()
    }
}

#[async_trait]
impl QueueControl for EmbeddedBackend {
    async fn pause(&self, queue: &str) -> Result<bool, Error> {
        validate_queue_name(queue)?;
        let queue = queue.to_string();
        self.call(true, 1, move |s| s.pause(&queue)).await
    }

    async fn resume(&self, queue: &str) -> Result<bool, Error> {
        validate_queue_name(queue)?;
        let queue = queue.to_string();
        self.call(true, 1, move |s| s.resume(&queue)).await
    }

    async fn paused(&self) -> Result<Vec<String>, Error> {
        self.call(false, 1, |s| s.paused()).await
    }
}
