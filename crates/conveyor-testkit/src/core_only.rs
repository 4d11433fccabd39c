//! [`CoreOnly`]: a backend cut down to its required core and result store.

use std::time::Duration;

use conveyor_core::{
    async_trait, Backend, Capabilities, Enqueued, Error, Finish, Lease, NewTask, Reserved,
    ResultStore,
};

/// A backend showing only its required core and its result store, as a
/// message broker with a result store beside it would: for tests of what
/// runs, and what says `Unsupported`, without the optional parts.
pub struct CoreOnly<B>(pub B);

#[async_trait]
impl<B: Backend + ResultStore> Backend for CoreOnly<B> {
    fn kind(&self) -> &'static str {
        "core-only"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        self.0.enqueue_many(tasks).await
    }
    async fn reserve(
        &self,
        queues: &[String],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Reserved>, Error> {
        self.0.reserve(queues, max, lease).await
    }
    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        self.0.renew(leases, lease).await
    }
    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        self.0.finish(reports).await
    }
    fn result_store(&self) -> Option<&dyn ResultStore> {
        Some(&self.0)
    }
}
