//! The worker registry in memory: each worker's latest heartbeat in a map.

use conveyor_core::async_trait;
use conveyor_core::{workers_heard_since, Error, Registry, Timestamp, WorkerInfo};

use crate::backend::MemoryBackend;

#[async_trait]
impl Registry for MemoryBackend {
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), Error> {
        self.state
            .lock()
            .workers
            .insert(worker.id.clone(), worker.clone());
        Ok(())
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>, Error> {
        let entries: Vec<WorkerInfo> = self.state.lock().workers.values().cloned().collect();
        Ok(workers_heard_since(entries, since))
    }

    async fn forget_workers(&self, before: Timestamp) -> Result<u64, Error> {
        let mut state = self.state.lock();
        let n = state.workers.len();
        state.workers.retain(|_, w| w.heartbeat_at >= before);
        Ok((n - state.workers.len()) as u64)
    }
}
