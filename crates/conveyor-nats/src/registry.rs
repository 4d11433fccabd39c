//! The worker registry: one ledger key per worker, `w.<id>`, holding the
//! JSON of its latest heartbeat. A heartbeat is one put; listing and
//! forgetting scan the `w.*` keys (a registry holds tens of workers, not
//! millions).

use conveyor_core::async_trait;
use conveyor_core::{Error, Registry, Timestamp, WorkerInfo};

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
        let mut out: Vec<WorkerInfo> = self
            .all_workers()
            .await?
            .into_iter()
            .filter(|w| w.heartbeat_at >= since)
            .collect();
        out.sort_by(|a, b| b.heartbeat_at.cmp(&a.heartbeat_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn forget_workers(&self, before: Timestamp) -> Result<u64, Error> {
        let mut n = 0;
        for w in self.all_workers().await? {
            if w.heartbeat_at < before {
                self.inner.ledger.remove(&keys::worker(&w.id)).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}
