//! The worker registry: one ledger key per worker, `w.<id>`, holding the
//! JSON of its latest heartbeat. A heartbeat is one put; listing and
//! forgetting scan the `w.*` keys (a registry holds tens of workers, not
//! millions).

use conveyor_core::async_trait;
use conveyor_core::{
    workers_heard_since, workers_silent_before, Error, Registry, Timestamp, WorkerInfo,
};

use crate::backend::NatsBackend;
use crate::names::keys;

impl NatsBackend {
    async fn all_workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        self.inner
            .ledger
            .scan(keys::WORKERS)
            .await?
            .iter()
            .map(|(_, value, _)| {
                WorkerInfo::from_json(std::str::from_utf8(value).unwrap_or("not utf-8"))
            })
            .collect()
    }
}

#[async_trait]
impl Registry for NatsBackend {
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), Error> {
        let key = keys::worker(&worker.id);
        let put = self.inner.ledger.put(&key, worker.to_json().into());
        self.guard("heartbeat", put).await.map(|_| ())
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>, Error> {
        Ok(workers_heard_since(self.all_workers().await?, since))
    }

    async fn forget_workers(&self, before: Timestamp) -> Result<u64, Error> {
        let mut n = 0;
        for id in workers_silent_before(self.all_workers().await?, before) {
            self.inner.ledger.remove(&keys::worker(&id)).await?;
            n += 1;
        }
        Ok(n)
    }
}
