//! A backend that cleans up its namespace when dropped: the teardown hook of the
//! conformance suite (drop a test schema, delete a key prefix, remove a file).

use std::time::Duration;

use conveyor_core::{
    async_trait, Administration, Backend, Capabilities, Enqueued, Error, Finish, GlobalLimits,
    Inspection, Lease, Maintenance, NewTask, Part, Reserved, ResultStore,
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

impl<B: Backend> Scoped<B> {
    /// `part` of the wrapped backend, unless only the core is shown.
    fn beyond_core<'a, P: ?Sized>(
        &self,
        part: Result<&'a P, Error>,
        which: Part,
    ) -> Result<&'a P, Error> {
        if self.core_only {
            Err(which.unsupported(self.inner.kind()))
        } else {
            part
        }
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
        params: conveyor_core::ReserveParams<'_>,
    ) -> Result<Vec<Reserved>, Error> {
        self.inner.reserve(params).await
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

    fn result_store(&self) -> Result<&dyn ResultStore, Error> {
        self.inner.result_store()
    }

    fn inspection(&self) -> Result<&dyn Inspection, Error> {
        self.beyond_core(self.inner.inspection(), Part::Inspection)
    }

    fn administration(&self) -> Result<&dyn Administration, Error> {
        self.beyond_core(self.inner.administration(), Part::Administration)
    }

    fn maintenance(&self) -> Result<&dyn Maintenance, Error> {
        self.beyond_core(self.inner.maintenance(), Part::Maintenance)
    }

    fn global_limits(&self) -> Result<&dyn GlobalLimits, Error> {
        self.beyond_core(self.inner.global_limits(), Part::GlobalLimits)
    }

    fn registry(&self) -> Result<&dyn conveyor_core::Registry, Error> {
        self.beyond_core(self.inner.registry(), Part::Registry)
    }

    fn queue_control(&self) -> Result<&dyn conveyor_core::QueueControl, Error> {
        self.beyond_core(self.inner.queue_control(), Part::QueueControl)
    }

    fn record_keeper(&self) -> Result<&dyn conveyor_core::RecordKeeper, Error> {
        self.beyond_core(self.inner.record_keeper(), Part::RecordKeeper)
    }

    fn workflows(&self) -> Result<&dyn conveyor_core::Workflows, Error> {
        self.beyond_core(self.inner.workflows(), Part::Workflows)
    }

    fn schedules(&self) -> Result<&dyn conveyor_core::Schedules, Error> {
        self.beyond_core(self.inner.schedules(), Part::Schedules)
    }
}
