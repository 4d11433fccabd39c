//! The worker registry in Redis: one hash, worker id → the JSON of its
//! latest heartbeat. A heartbeat is one `HSET`; listing and forgetting read
//! the hash whole (a registry holds tens of workers, not millions).

use conveyor_core::async_trait;
use conveyor_core::{
    workers_heard_since, workers_silent_before, Error, Registry, Timestamp, WorkerInfo,
};

use crate::backend::RedisBackend;
use crate::reply::redis_error;

impl RedisBackend {
    async fn all_workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        let mut conn = self.inner.conn.clone();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.inner.keys.workers())
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("listing workers", e))?;
        fields
            .iter()
            .map(|(_, info)| WorkerInfo::from_json(info))
            .collect()
    }
}

#[async_trait]
impl Registry for RedisBackend {
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), Error> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("HSET")
            .arg(self.inner.keys.workers())
            .arg(&worker.id)
            .arg(worker.to_json())
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| redis_error("recording a worker's heartbeat", e))
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>, Error> {
        Ok(workers_heard_since(self.all_workers().await?, since))
    }

    async fn forget_workers(&self, before: Timestamp) -> Result<u64, Error> {
        let old = workers_silent_before(self.all_workers().await?, before);
        if old.is_empty() {
            return Ok(0);
        }
        let mut conn = self.inner.conn.clone();
        redis::cmd("HDEL")
            .arg(self.inner.keys.workers())
            .arg(&old)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("forgetting old workers", e))
    }
}
