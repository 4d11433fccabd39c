//! The tasks this process holds, by lease token: where each claim lives (an
//! unacknowledged delivery on a consumer channel, or a custody queue) and the
//! message to copy when the task moves on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use conveyor_core::Lease;

use crate::consumer::QueueConsumer;
use crate::message::TaskMessage;

/// Where a held task's claim lives.
#[derive(Clone)]
pub(crate) enum Place {
    /// An unacknowledged delivery: valid while its channel is.
    Delivery {
        consumer: Arc<QueueConsumer>,
        tag: u64,
    },
    /// A copy in custody queue generation `generation` (see `custody`).
    Custody { generation: u64 },
}

/// One held task.
#[derive(Clone)]
pub(crate) struct Held {
    pub(crate) message: TaskMessage,
    pub(crate) place: Place,
    /// When the current place was taken (a delivery's hold time counts
    /// toward the server's consumer timeout).
    pub(crate) since: Instant,
    /// The lease it was reserved with (a custody copy's TTL).
    pub(crate) lease: Duration,
}

/// Held tasks by token.
#[derive(Default)]
pub(crate) struct HeldTasks(Mutex<HashMap<u64, Held>>);

impl HeldTasks {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Held>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, token: u64, held: Held) {
        self.lock().insert(token, held);
    }

    /// The claim of `lease`, if this process still holds it.
    pub(crate) fn get(&self, lease: &Lease) -> Option<Held> {
        let map = self.lock();
        map.get(&lease.token)
            .filter(|h| h.message.id == lease.id)
            .cloned()
    }

    /// `f` of the message `lease` holds, without copying it.
    pub(crate) fn with<T>(&self, lease: &Lease, f: impl FnOnce(&TaskMessage) -> T) -> Option<T> {
        let map = self.lock();
        map.get(&lease.token)
            .filter(|h| h.message.id == lease.id)
            .map(|h| f(&h.message))
    }

    /// Moves the claim of `token` to a new place.
    pub(crate) fn moved(&self, token: u64, place: Place) {
        if let Some(h) = self.lock().get_mut(&token) {
            h.place = place;
            h.since = Instant::now();
        }
    }

    /// Forgets a claim.
    pub(crate) fn forget(&self, token: u64) {
        self.lock().remove(&token);
    }
}
