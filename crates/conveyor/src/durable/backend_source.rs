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
//!
//! A task whose handler this worker lacks (a rolling deploy: a newer worker
//! beside it serves a handler it does not have) is never run, failed or
//! dead-lettered here: it is handed back unstarted, without counting the
//! attempt, and for [`FOREIGN_FOR`] after meeting one the worker reserves
//! only its own handlers ([`ReserveParams::handlers`]), so a store leaves
//! such tasks in their place for a worker that has them (a broker sends
//! them round a short delay instead). Reservations ask with no filter
//! otherwise: the common case pays nothing for it (on PostgreSQL a filtered
//! reservation takes the slower, limited way).
//!
//! A handler with a retention of its own has it stamped on every report of
//! its tasks ([`Finish::retention`]), so the store expires them by it
//! whichever worker prunes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{
    async_trait, Backend, Error, Finish, FinishAction, FinishMark, Lease, ReserveParams, Reserved,
    Retention, TaskId,
};
use futures_util::stream::{FuturesUnordered, StreamExt};

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
    /// The handlers this worker runs, sorted.
    handlers: Vec<String>,
    /// The handlers with a retention of their own.
    retention: HashMap<String, Retention>,
    /// Until when reservations ask for this worker's handlers only (a task
    /// of another handler was met lately).
    foreign_until: parking_lot::Mutex<Option<Instant>>,
}

/// How long a worker that met a task of a handler it lacks reserves only its
/// own handlers.
pub(crate) const FOREIGN_FOR: Duration = Duration::from_secs(30);

impl BackendSource {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        queues: Vec<String>,
        lease: Duration,
        worker: String,
        mut handlers: Vec<String>,
        retention: HashMap<String, Retention>,
    ) -> Self {
        let names = queues.iter().map(|q| Arc::from(q.as_str())).collect();
        handlers.sort();
        Self {
            backend,
            queues,
            names,
            lease,
            worker,
            handlers,
            retention,
            foreign_until: parking_lot::Mutex::new(None),
        }
    }

    /// True when this worker runs `handler`.
    fn runs(&self, handler: &str) -> bool {
        self.handlers
            .binary_search_by(|h| h.as_str().cmp(handler))
            .is_ok()
    }

    /// Hands `tasks` back unstarted, without counting their attempts (a
    /// lease that ran out meanwhile is refused as stale: its task is back in
    /// the queue already).
    async fn hand_back(&self, tasks: Vec<Reserved>) {
        let back = tasks
            .into_iter()
            .map(|r| Finish::new(r.lease, FinishAction::Release))
            .collect();
        if let Err(e) = self.backend.finish(back).await {
            tracing::warn!(error = %e.chain(), "handing tasks back failed; their leases will run out");
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
        let filtered = self
            .foreign_until
            .lock()
            .is_some_and(|until| Instant::now() < until);
        let params = if filtered {
            params.handlers(&self.handlers)
        } else {
            params
        };
        let sent = Instant::now();
        let reserved = self.backend.reserve(params).await?;
        if sent.elapsed() >= self.lease / 2 && !reserved.is_empty() {
            tracing::warn!(
                tasks = reserved.len(),
                after = ?sent.elapsed(),
                "a reservation answered after half its lease: handing its tasks back unstarted"
            );
            self.hand_back(reserved).await;
            return Ok(Vec::new());
        }
        let (mine, foreign): (Vec<Reserved>, Vec<Reserved>) =
            reserved.into_iter().partition(|r| self.runs(&r.handler));
        if !foreign.is_empty() {
            let mut lacking: Vec<&str> = foreign.iter().map(|r| r.handler.as_str()).collect();
            lacking.sort_unstable();
            lacking.dedup();
            tracing::info!(
                tasks = foreign.len(),
                handlers = %lacking.join(", "),
                "tasks of handlers this worker lacks are handed back unstarted for a worker that has them; reserving only this worker's handlers for a while"
            );
            *self.foreign_until.lock() = Some(Instant::now() + FOREIGN_FOR);
            self.hand_back(foreign).await;
        }
        Ok(mine.into_iter().map(|r| self.delivery(r)).collect())
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

    /// A store with a result store signals through its finish
    /// notifications: a task cancelled while it runs is a finish like any
    /// other.
    fn signals_settles(&self) -> bool {
        self.backend.result_store().is_ok()
    }

    async fn settle_mark(&self) -> Option<FinishMark> {
        self.backend.result_store().ok()?.finish_mark().await
    }

    /// One wait per task on the store's finish board; the first to answer
    /// ends them all. A store that cannot notify after all is quiet for
    /// `timeout`.
    async fn settled_elsewhere(
        &self,
        ids: &[TaskId],
        since: FinishMark,
        timeout: Duration,
    ) -> bool {
        let Ok(store) = self.backend.result_store() else {
            tokio::time::sleep(timeout).await;
            return false;
        };
        // Longer than ours: each returns only on a sign, or at once when the
        // store cannot notify.
        let each = timeout.saturating_add(Duration::from_secs(1));
        let mut waits: FuturesUnordered<_> = ids
            .iter()
            .map(|&id| store.wait_finished(id, since, each))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, waits.next()).await {
            Ok(Some(true)) => true,
            Ok(Some(false)) => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            Ok(None) | Err(_) => false,
        }
    }

    async fn settle(&self, batch: Vec<Settlement<Lease>>) -> Result<Vec<Result<(), Error>>, Error> {
        let reports = batch
            .into_iter()
            .map(|s| {
                let report = Finish::new(s.receipt, s.action).with_follow_ups(s.follow_ups);
                match self.retention.get(&*s.handler) {
                    Some(r) => report.with_retention(*r),
                    None => report,
                }
            })
            .collect();
        self.backend.finish(reports).await
    }
}
