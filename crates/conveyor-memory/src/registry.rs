//! The worker registry in memory: each worker's latest heartbeat in a map.

use conveyor_core::async_trait;
use conveyor_core::{Error, Registry, Timestamp, WorkerInfo};

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
        let mut out: Vec<WorkerInfo> = self
            .state
            .lock()
            .workers
            .values()
            .filter(|w| w.heartbeat_at >= since)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.heartbeat_at.cmp(&a.heartbeat_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn forget_workers(&self, before: Timestamp) -> Result<u64, Error> {
        let mut state = self.state.lock();
        let n = state.workers.len();
        state.workers.retain(|_, w| w.heartbeat_at >= before);
        Ok((n - state.workers.len()) as u64)
    }
}
