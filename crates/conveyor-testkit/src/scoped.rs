//! A backend that cleans up its namespace when dropped: the teardown hook of the
//! conformance suite (drop a test schema, delete a key prefix, remove a file).

use std::time::Duration;

use conveyor_core::{
    async_trait, Administration, Backend, Capabilities, Enqueued, Error, Finish, GlobalLimits,
    Inspection, Lease, Maintenance, NewTask, Reserved, ResultStore,
};

type Cleanup = Box<dyn FnOnce() + Send + Sync>;

/// Wraps a backend; every call goes to it, and `cleanup` runs when this is dropped
/// (also when the test panics).
pub struct Scoped<B> {
    inner: B,
    cleanup: Option<Cleanup>,
    /// Show only the required core and the result store.
    core_only: bool,
}

impl<B> Scoped<B> {
    /// Wraps `inner`, running `cleanup` on drop.
    pub fn new(inner: B, cleanup: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self {
            inner,
            cleanup: Some(Box::new(cleanup)),
            core_only: false,
        }
    }

    /// Wraps `inner` showing only its required core and its result store, as
    /// a message broker with a result store beside it would: for tests of
    /// what runs, and what says `Unsupported`, without the optional parts.
    pub fn core_only(inner: B) -> Self {
        Self {
            inner,
            cleanup: None,
            core_only: true,
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

    fn reserves_in_flight(&self) -> usize {
        self.inner.reserves_in_flight()
    }

    fn reserves_split(&self) -> bool {
        self.inner.reserves_split()
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

    async fn reserve_with(
        &self,
        params: conveyor_core::ReserveParams<'_>,
    ) -> Result<Vec<Reserved>, Error> {
        self.inner.reserve_with(params).await
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        self.inner.renew(leases, lease).await
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        self.inner.finish(reports).await
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        self.inner.wait_for_work(queues, timeout).await
    }

    fn set_slots(&self, slots: usize) {
        self.inner.set_slots(slots);
    }

    fn reconnects(&self) -> Option<u64> {
        self.inner.reconnects()
    }

    fn result_store(&self) -> Option<&dyn ResultStore> {
        self.inner.result_store()
    }

    fn inspection(&self) -> Option<&dyn Inspection> {
        self.inner.inspection().filter(|_| !self.core_only)
    }

    fn administration(&self) -> Option<&dyn Administration> {
        self.inner.administration().filter(|_| !self.core_only)
    }

    fn maintenance(&self) -> Option<&dyn Maintenance> {
        self.inner.maintenance().filter(|_| !self.core_only)
    }

    fn global_limits(&self) -> Option<&dyn GlobalLimits> {
        self.inner.global_limits().filter(|_| !self.core_only)
    }

    fn registry(&self) -> Option<&dyn conveyor_core::Registry> {
        self.inner.registry().filter(|_| !self.core_only)
    }

    fn queue_control(&self) -> Option<&dyn conveyor_core::QueueControl> {
        self.inner.queue_control().filter(|_| !self.core_only)
    }
}
