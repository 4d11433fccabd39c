//! A durable backend as a [`Source`]: reserve is fetch (naming the worker,
//! for the attempts' history), the lease token is the receipt, renew is
//! renew, finish is settle.
//!
//! Retries belong to the backend ([`Retries::BySource`]): the runner runs one
//! attempt per reservation and reports a failure as "retry after the
//! handler's backoff", so a crash during the backoff loses nothing and
//! another worker may take the retry.
//!
//! A reservation that answers late — half a lease or more after it was sent,
//! as when a request sat in a stalled network and the store ran it on
//! recovery, with the time it was sent — is not run: its leases may have run
//! out already, so the tasks may be another worker's by now. They are handed
//! back unstarted (without counting the attempt) and run from a timely
//! reservation instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{
    async_trait, Backend, Error, Finish, FinishAction, Lease, ReserveParams, Reserved,
};

use crate::source::{Delivery, Retries, Settlement, Source};

/// Tasks of some queues of a backend, reserved under a lease.
pub(crate) struct BackendSource {
    backend: Arc<dyn Backend>,
    queues: Vec<String>,
    /// The queue names once more, shared by every delivery of each.
    names: Vec<Arc<str>>,
    lease: Duration,
    /// The worker's id, named in every reservation (the attempts' worker).
    worker: String,
}

impl BackendSource {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        queues: Vec<String>,
        lease: Duration,
        worker: String,
    ) -> Self {
        let names = queues.iter().map(|q| Arc::from(q.as_str())).collect();
        Self {
            backend,
            queues,
            names,
            lease,
            worker,
        }
    }

    fn delivery(&self, r: Reserved) -> Delivery<Vec<u8>, Lease> {
        let queue = self
            .names
            .iter()
            .find(|q| ***q == *r.queue)
            .cloned()
            .unwrap_or_else(|| Arc::from(r.queue.as_str()));
        Delivery {
            id: r.lease.id,
            handler: r.handler,
            payload: r.payload,
            queue,
            attempt: r.attempt,
            max_attempts: Some(r.max_attempts),
            timeout: r.timeout,
            receipt: r.lease,
            ready_at: r.due_at.to_system_time(),
            trace: r.trace,
        }
    }
}

#[async_trait]
impl Source for BackendSource {
    type Payload = Vec<u8>;
    type Receipt = Lease;

    fn retries(&self) -> Retries {
        Retries::BySource
    }

    fn follow_ups(&self) -> bool {
        true
    }

    fn fetches_in_flight(&self) -> usize {
        self.backend.reserves_in_flight()
    }

    fn fetches_split(&self) -> bool {
        self.backend.reserves_split()
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Vec<u8>, Lease>>, Error> {
        let params = ReserveParams::new(&self.queues, max, self.lease).worker(&self.worker);
        let sent = Instant::now();
        let reserved = self.backend.reserve_with(params).await?;
        if sent.elapsed() >= self.lease / 2 && !reserved.is_empty() {
            tracing::warn!(
                tasks = reserved.len(),
                after = ?sent.elapsed(),
                "a reservation answered after half its lease: handing its tasks back unstarted"
            );
            let back = reserved
                .into_iter()
                .map(|r| Finish::new(r.lease, FinishAction::Release))
                .collect();
            // A lease that ran out meanwhile is refused as stale: its task
            // is back in the queue already.
            if let Err(e) = self.backend.finish(back).await {
                tracing::warn!(error = %e.chain(), "handing back a late reservation failed; its leases will run out");
            }
            return Ok(Vec::new());
        }
        Ok(reserved.into_iter().map(|r| self.delivery(r)).collect())
    }

    async fn wait_for_work(&self, timeout: Duration) -> bool {
        self.backend.wait_for_work(&self.queues, timeout).await
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    async fn renew(&self, receipts: &[Lease]) -> Result<Vec<bool>, Error> {
        self.backend.renew(receipts, self.lease).await
    }

    async fn settle(&self, batch: Vec<Settlement<Lease>>) -> Result<Vec<Result<(), Error>>, Error> {
        let reports = batch
            .into_iter()
            .map(|s| Finish::new(s.receipt, s.action).with_follow_ups(s.follow_ups))
            .collect();
        self.backend.finish(reports).await
    }
}
