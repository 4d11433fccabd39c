//! The tasks this process holds, by lease token: where each claim lives (an
//! unacknowledged delivery on a consumer channel, or a custody queue) and the
//! message to copy when the task moves on.
//!
//! Every change of a claim — the move to custody, a renewal rolling its
//! custody generation, a report settling it — happens under the claim's own
//! lock, one at a time. Two of them interleaved lose work: a report that read
//! generation `g` while a renewal replaced `g` with `g+1` would find `g` gone,
//! take the claim for lost and delete `g+1`, the task's last copy. Under the
//! lock a report waits for the renewal in flight and settles the generation it
//! made, and a renewal that comes after a report finds the claim settled and
//! does nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use conveyor_core::Lease;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::consumer::QueueConsumer;
use crate::hooks::{Hooks, Point};
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

/// A claim's changing part, behind its lock; `None` once it is settled or
/// known lost.
pub(crate) struct Spot {
    pub(crate) place: Place,
    /// The custody copies' TTL: the lease reserved with, then the one the
    /// last renewal asked for.
    pub(crate) ttl: Duration,
    /// What a report publishes was confirmed already (a report whose last
    /// step failed and is tried again publishes nothing twice).
    pub(crate) published: bool,
}

/// The lock over a claim's [`Spot`].
pub(crate) type SpotGuard = OwnedMutexGuard<Option<Spot>>;

/// Where a claim is, for the move to custody (read without the lock).
const IN_DELIVERY: u8 = 0;
const MOVING: u8 = 1;
const MOVED: u8 = 2;

/// One held task.
pub(crate) struct Claim {
    /// Its lease token (unique among this process's claims, random across
    /// processes): custody queues are named after it.
    pub(crate) token: u64,
    pub(crate) message: TaskMessage,
    /// When the worker took the delivery: its hold time counts toward the
    /// server's consumer timeout from here.
    pub(crate) delivered: Instant,
    stage: AtomicU8,
    spot: Arc<AsyncMutex<Option<Spot>>>,
}

impl Claim {
    /// A claim on a delivery.
    pub(crate) fn new(token: u64, message: TaskMessage, lease: Duration, place: Place) -> Claim {
        Claim {
            token,
            message,
            delivered: Instant::now(),
            stage: AtomicU8::new(IN_DELIVERY),
            spot: Arc::new(AsyncMutex::new(Some(Spot {
                place,
                ttl: lease,
                published: false,
            }))),
        }
    }

    /// Waits for the claim's lock (telling the hook when another operation
    /// holds it).
    pub(crate) async fn lock(&self, hooks: &Hooks) -> SpotGuard {
        match self.spot.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                hooks
                    .at(Point::Contended {
                        task: self.message.id,
                    })
                    .await;
                self.spot.clone().lock_owned().await
            }
        }
    }

    /// True when the delivery is still to be moved to custody and no move
    /// has started; marks the move started.
    pub(crate) fn start_move(&self) -> bool {
        self.stage
            .compare_exchange(IN_DELIVERY, MOVING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The claim is in custody (or gone): no move is due any more.
    pub(crate) fn moved(&self) {
        self.stage.store(MOVED, Ordering::Release);
    }

    fn awaits_move(&self) -> bool {
        self.stage.load(Ordering::Acquire) == IN_DELIVERY
    }
}

/// Held tasks by token.
#[derive(Default)]
pub(crate) struct Claims(Mutex<HashMap<u64, Arc<Claim>>>);

impl Claims {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Claim>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, claim: Claim) {
        self.lock().insert(claim.token, Arc::new(claim));
    }

    /// The claim of `lease`, if this process still holds it.
    pub(crate) fn get(&self, lease: &Lease) -> Option<Arc<Claim>> {
        let map = self.lock();
        map.get(&lease.token)
            .filter(|c| c.message.id == lease.id)
            .cloned()
    }

    /// `f` of the message `lease` holds, without copying it.
    pub(crate) fn with<T>(&self, lease: &Lease, f: impl FnOnce(&TaskMessage) -> T) -> Option<T> {
        let map = self.lock();
        map.get(&lease.token)
            .filter(|c| c.message.id == lease.id)
            .map(|c| f(&c.message))
    }

    /// Ends `claim` (settled, or known lost), under its lock.
    pub(crate) fn end(&self, claim: &Claim, spot: &mut SpotGuard) {
        **spot = None;
        claim.moved();
        self.lock().remove(&claim.token);
    }

    /// The claims still in a delivery with no move to custody started.
    pub(crate) fn awaiting_move(&self) -> Vec<Arc<Claim>> {
        self.lock()
            .values()
            .filter(|c| c.awaits_move())
            .cloned()
            .collect()
    }
}
