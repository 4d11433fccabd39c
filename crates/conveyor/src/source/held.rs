//! The tasks a runner holds: fetched and not yet settled, keyed by the
//! source's own task id (the engine runs each task under that id too, so no
//! second id and no translation).
//!
//! One id can come back while its first delivery still runs: a claim that
//! ran out was given to this runner again. The first attempt is then lost
//! (the source has moved on), so it is cancelled, and the new delivery waits
//! here, parked, until the old attempt's outcome is in; only then does it
//! start, under the same id. Each delivery gets a generation number, so a
//! late answer about an old claim (a renewal that failed) never touches the
//! new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use conveyor_core::{NewTask, TaskId};

use super::contract::Delivery;
use super::routes::Route;

/// A delivery with the route it runs on.
pub(crate) type Routed<P, R> = (Delivery<P, R>, Arc<Route<P>>);

/// One held task.
pub(crate) struct Entry<P, R> {
    pub(crate) receipt: R,
    pub(crate) queue: Arc<str>,
    /// The delivery's attempt number.
    pub(crate) attempt: u32,
    /// Attempts the task may have in all.
    pub(crate) max_attempts: u32,
    pub(crate) route: Arc<Route<P>>,
    /// Which delivery this is.
    pub(crate) generation: u64,
    /// The attempt was cancelled by the runner (its claim was lost, or a new
    /// delivery of the same id arrived).
    pub(crate) cancelled: bool,
    /// A newer delivery of the same id, waiting for this one's outcome
    /// (boxed: rare, and a whole delivery would more than double the size
    /// of every entry the map moves).
    pub(crate) next: Option<Box<Routed<P, R>>>,
    /// Tasks the running attempt asked to enqueue when it succeeds.
    pub(crate) follow_ups: Vec<NewTask>,
    /// An attempt has started (counted in the runner's running gauge until
    /// the task leaves).
    pub(crate) running: bool,
    /// When the task became ready to run, if the source said.
    pub(crate) ready_at: Option<SystemTime>,
    /// When this runner took it.
    pub(crate) held_at: Instant,
    /// The trace context the task carries, if any (feature `otel`).
    #[cfg(feature = "otel")]
    pub(crate) trace: Option<conveyor_core::TraceContext>,
    /// The running attempt's span (feature `otel`).
    #[cfg(feature = "otel")]
    pub(crate) span: Option<opentelemetry::Context>,
}

/// A held task whose outcome arrived, and the delivery of its id that
/// waited for it, if any (held now in its place).
pub(crate) struct Removed<P, R> {
    pub(crate) entry: Entry<P, R>,
    pub(crate) next: Option<Routed<P, R>>,
}

/// What [`Held::insert`] did with a delivery.
pub(crate) enum Inserted<P, R> {
    /// It is held: start it.
    Start(Delivery<P, R>, Arc<Route<P>>),
    /// Its id is still running an older delivery, now cancelled: it starts
    /// when that one's outcome arrives. `replaced` when it took the place of
    /// an earlier parked delivery, which is dropped (its claim is lost too).
    Parked {
        /// An earlier parked delivery was dropped.
        replaced: bool,
    },
}

/// The runner's held tasks.
pub(crate) struct Held<P, R> {
    inner: Mutex<Inner<P, R>>,
}

struct Inner<P, R> {
    map: HashMap<TaskId, Entry<P, R>>,
    next_generation: u64,
}

impl<P, R: Clone> Held<P, R> {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                next_generation: 1,
            }),
        }
    }

    /// Holds a delivery, or parks it behind an older delivery of its id;
    /// `cancel` is called (under the lock) for the older one's attempt.
    pub(crate) fn insert(
        &self,
        delivery: Delivery<P, R>,
        route: Arc<Route<P>>,
        cancel: impl FnOnce(TaskId),
    ) -> Inserted<P, R> {
        let mut inner = self.inner.lock();
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let id = delivery.id;
        if let Some(old) = inner.map.get_mut(&id) {
            old.cancelled = true;
            // A still newer delivery replaces a parked one: that one's claim
            // is lost too, and its settlement would be refused.
            let replaced = old.next.replace(Box::new((delivery, route))).is_some();
            cancel(id);
            return Inserted::Parked { replaced };
        }
        inner
            .map
            .insert(delivery.id, entry(&delivery, &route, generation));
        Inserted::Start(delivery, route)
    }

    /// Takes the entry of task `id` when its outcome arrives. When a newer
    /// delivery was parked behind it, that one is held in its place and
    /// returned, to be started.
    pub(crate) fn remove(&self, id: TaskId) -> Option<Removed<P, R>> {
        let mut inner = self.inner.lock();
        let mut old = inner.map.remove(&id)?;
        let next = old.next.take().map(|b| *b);
        if let Some((delivery, route)) = &next {
            let generation = inner.next_generation;
            inner.next_generation += 1;
            inner.map.insert(id, entry(delivery, route, generation));
        }
        Some(Removed { entry: old, next })
    }

    /// Takes the entry of a task that could not start (it is not running).
    pub(crate) fn forget(&self, id: TaskId) -> Option<Entry<P, R>> {
        self.inner.lock().map.remove(&id)
    }

    /// Every held receipt with its task and generation (for renewals).
    pub(crate) fn receipts(&self) -> Vec<(TaskId, u64, R)> {
        self.inner
            .lock()
            .map
            .iter()
            .map(|(id, e)| (*id, e.generation, e.receipt.clone()))
            .collect()
    }

    /// The receipts of the tasks held for `age` or longer whose attempt is
    /// not cancelled yet, with their task and generation (the ones a
    /// cancel elsewhere is watched for).
    pub(crate) fn held_for(&self, age: Duration) -> Vec<(TaskId, u64, R)> {
        let now = Instant::now();
        self.inner
            .lock()
            .map
            .iter()
            .filter(|(_, e)| !e.cancelled && now.saturating_duration_since(e.held_at) >= age)
            .map(|(id, e)| (*id, e.generation, e.receipt.clone()))
            .collect()
    }

    /// Marks the attempt of `id` cancelled, whichever delivery it is; true
    /// if it was held and not cancelled yet (`cancel` is then called under
    /// the lock).
    pub(crate) fn cancel(&self, id: TaskId, cancel: impl FnOnce(TaskId)) -> bool {
        let mut inner = self.inner.lock();
        match inner.map.get_mut(&id) {
            Some(e) if !e.cancelled => {
                e.cancelled = true;
                cancel(id);
                true
            }
            _ => false,
        }
    }

    /// Changes the entry of task `id`, if held.
    pub(crate) fn with_mut<T>(
        &self,
        id: TaskId,
        f: impl FnOnce(&mut Entry<P, R>) -> T,
    ) -> Option<T> {
        self.inner.lock().map.get_mut(&id).map(f)
    }

    /// Marks the attempt of `id` cancelled if it is still delivery
    /// `generation`; true if so (the caller then cancels it in the engine,
    /// through `cancel`, called under the lock).
    pub(crate) fn cancel_if(
        &self,
        id: TaskId,
        generation: u64,
        cancel: impl FnOnce(TaskId),
    ) -> bool {
        let mut inner = self.inner.lock();
        match inner.map.get_mut(&id) {
            Some(e) if e.generation == generation && !e.cancelled => {
                e.cancelled = true;
                cancel(id);
                true
            }
            _ => false,
        }
    }
}

fn entry<P, R: Clone>(d: &Delivery<P, R>, route: &Arc<Route<P>>, generation: u64) -> Entry<P, R> {
    Entry {
        receipt: d.receipt.clone(),
        queue: d.queue.clone(),
        attempt: d.attempt,
        max_attempts: route.max_attempts(d.max_attempts),
        route: route.clone(),
        generation,
        cancelled: false,
        running: false,
        next: None,
        follow_ups: Vec::new(),
        ready_at: d.ready_at,
        held_at: Instant::now(),
        #[cfg(feature = "otel")]
        trace: d.trace.clone(),
        #[cfg(feature = "otel")]
        span: None,
    }
}
