//! A backend that cleans up its namespace when dropped: the teardown hook of the
//! conformance suite (drop a test schema, delete a key prefix, remove a file).

use std::time::Duration;

use conveyor_core::{
    async_trait, Backend, Capabilities, Enqueued, Error, Finish, HandlerLimits, Lease, NewTask,
    QueueStats, Reserved, Retention, TaskId, TaskRecord, TaskState,
};

type Cleanup = Box<dyn FnOnce() + Send + Sync>;

/// Wraps a backend; every call goes to it, and `cleanup` runs when this is dropped
/// (also when the test panics).
pub struct Scoped<B> {
    inner: B,
    cleanup: Option<Cleanup>,
}

impl<B> Scoped<B> {
    /// Wraps `inner`, running `cleanup` on drop.
    pub fn new(inner: B, cleanup: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self {
            inner,
            cleanup: Some(Box::new(cleanup)),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B> std::fmt::Debug for Scoped<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scoped")
    }
}

impl<B> Drop for Scoped<B> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

#[async_trait]
impl<B: Backend> Backend for Scoped<B> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        self.inner.enqueue_many(tasks).await
    }
    async fn reserve(
        &self,
        queues: &[String],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Reserved>, Error> {
        self.inner.reserve(queues, max, lease).await
    }
    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        self.inner.renew(leases, lease).await
    }
    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        self.inner.finish(reports).await
    }
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        self.inner.cancel(id).await
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        self.inner.get(id).await
    }
    async fn recover_expired(&self) -> Result<u64, Error> {
        self.inner.recover_expired().await
    }
    async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        self.inner.prune(retention).await
    }
    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        self.inner.stats().await
    }
    async fn list(
        &self,
        queue: Option<&str>,
        state: TaskState,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, Error> {
        self.inner.list(queue, state, limit).await
    }
    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        self.inner.requeue_dead(ids).await
    }
    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        self.inner.purge_dead(queue).await
    }
    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        self.inner.wait_for_work(queues, timeout).await
    }
    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        self.inner.set_limits(handler, limits).await
    }
    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        self.inner.limits().await
    }
}
