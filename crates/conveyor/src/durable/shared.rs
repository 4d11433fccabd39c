//! The state a durable worker's loops share: leases in flight, free slots, counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use conveyor_core::{Backend, Lease, TaskId};

use crate::job::TaskHandle;

use super::registry::Registered;

/// A reserved task from the moment it is reserved until its report is stored.
pub(crate) struct InFlight {
    /// The backend's claim.
    pub(crate) lease: Lease,
    /// Its queue.
    pub(crate) queue: String,
    /// This attempt's number.
    pub(crate) attempt: u32,
    /// Its handler.
    pub(crate) handler: Arc<Registered>,
    /// The engine task, once submitted (to cancel it when the lease is lost).
    pub(crate) handle: Option<TaskHandle>,
}

/// Counters of a worker's life, readable with [`WorkerStats`](super::WorkerStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) reserved: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) lost_leases: AtomicU64,
    pub(crate) backend_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Shared by the fetcher, the result thread, the completer, the lease keeper and
/// the maintenance loop.
pub(crate) struct WorkerShared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) queues: Vec<String>,
    pub(crate) slots: usize,
    pub(crate) lease: Duration,
    /// Engine task id → the reserved task it runs.
    pub(crate) inflight: Mutex<HashMap<TaskId, InFlight>>,
    /// Reserved tasks not yet reported: what holds a slot.
    pub(crate) busy: AtomicUsize,
    /// Signalled whenever `busy` goes down.
    pub(crate) freed: Notify,
    /// Stop reserving (graceful shutdown has begun).
    pub(crate) stop: CancellationToken,
    /// The grace period ran out: running tasks are being cancelled.
    pub(crate) aborting: AtomicBool,
    pub(crate) counters: Counters,
}

impl WorkerShared {
    /// Slots not holding a reserved task.
    pub(crate) fn free_slots(&self) -> usize {
        self.slots.saturating_sub(self.busy.load(Ordering::Acquire))
    }

    /// Gives `n` slots back.
    pub(crate) fn release_slots(&self, n: usize) {
        self.busy.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_waiters();
    }

    /// Waits until no reserved task is left, or `deadline` passes; true if none is left.
    pub(crate) async fn drained(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let notified = self.freed.notified();
            if self.busy.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.busy.load(Ordering::Acquire) == 0;
            }
        }
    }
}
