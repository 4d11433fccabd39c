//! Helpers shared by the Redis backend's tests: a fresh namespace per test on
//! the machine's Redis, deleted when the test ends (also when it fails).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    async_trait, Backend, Capabilities, Clock, Enqueued, Error, Finish, Lease, ManualClock,
    NewTask, QueueStats, Reserved, Retention, TaskId, TaskRecord, TaskState,
};
use conveyor_redis::RedisBackend;

/// The Redis the tests use (`CONVEYOR_REDIS_URL`, else the local default).
pub fn redis_url() -> String {
    std::env::var("CONVEYOR_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("conveyor-test-{:016x}:", fastrand::u64(..))
}

/// Every key under `prefix`, sorted.
pub fn keys_under(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client.get_connection().expect("redis connection");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .expect("KEYS");
    keys.sort();
    keys
}

/// Deletes every key under `prefix` (SCAN + DEL), synchronously.
pub fn delete_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
        else {
            return;
        };
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A backend on a fresh prefix whose keys are deleted when the last clone is
/// dropped.
#[derive(Debug)]
pub struct Namespace {
    pub backend: RedisBackend,
}

impl Namespace {
    /// A fresh namespace reading time from `clock`.
    pub async fn new(clock: Arc<dyn Clock>) -> Self {
        let backend = RedisBackend::connect_with(&redis_url(), &fresh_prefix(), clock)
            .await
            .expect("connect to the test Redis");
        Self { backend }
    }

    /// A fresh namespace on a manual clock.
    pub async fn manual() -> (Self, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (Self::new(clock.clone()).await, clock)
    }

    /// Another backend (its own connection) on the same namespace.
    pub async fn another(&self, clock: Arc<dyn Clock>) -> RedisBackend {
        RedisBackend::connect_with(&redis_url(), self.backend.prefix(), clock)
            .await
            .expect("connect to the test Redis")
    }

    pub fn prefix(&self) -> &str {
        self.backend.prefix()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        delete_prefix(self.backend.prefix());
    }
}

#[async_trait]
impl Backend for Namespace {
    fn kind(&self) -> &'static str {
        self.backend.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        self.backend.enqueue_many(tasks).await
    }
    async fn reserve(
        &self,
        queues: &[String],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Reserved>, Error> {
        self.backend.reserve(queues, max, lease).await
    }
    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        self.backend.renew(leases, lease).await
    }
    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        self.backend.finish(reports).await
    }
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        self.backend.cancel(id).await
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        self.backend.get(id).await
    }
    async fn recover_expired(&self) -> Result<u64, Error> {
        self.backend.recover_expired().await
    }
    async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        self.backend.prune(retention).await
    }
    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        self.backend.stats().await
    }
    async fn list(
        &self,
        queue: Option<&str>,
        state: TaskState,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, Error> {
        self.backend.list(queue, state, limit).await
    }
    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        self.backend.requeue_dead(ids).await
    }
    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        self.backend.purge_dead(queue).await
    }
    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        self.backend.wait_for_work(queues, timeout).await
    }
}
