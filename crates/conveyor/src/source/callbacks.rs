//! The user's `on_task_complete` for a runner, off the settlement path.
//!
//! The source already has every outcome when a callback hears of it: the
//! callback observes, it does not acknowledge. So it runs on a thread of its
//! own, fed by a bounded queue that the engine's workers never wait on. A
//! callback that falls more than the queue's capacity behind misses the
//! results that do not fit (counted in
//! [`RunnerStats::callbacks_dropped`](super::RunnerStats::callbacks_dropped)
//! and logged), and a callback that blocks for ever holds up nothing but
//! itself: tasks keep completing in the source.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use conveyor_core::{NextStep, TaskId};

use crate::results::TaskResult;

use super::stats::Counters;

/// A settled task, as given to a runner's `on_task_complete`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Settled {
    /// The task's id in its source.
    pub id: TaskId,
    /// The queue (or topic) it came from.
    pub queue: Arc<str>,
    /// The delivery's attempt number, from 1.
    pub attempt: u32,
    /// What the runner settled: done, retry after a delay, dead-letter,
    /// discard, or handed back.
    pub step: NextStep,
    /// The error settled with a failure (or why it was discarded or handed back).
    pub error: Option<String>,
    /// The engine's result of the attempt (outcome, output, timings).
    pub result: TaskResult,
}

/// Called with every settled task, on the runner's callback thread.
pub type OnSettled = Box<dyn FnMut(Settled) + Send>;

/// How many settled tasks may wait for a slow callback by default.
pub const DEFAULT_CALLBACK_CAPACITY: usize = 10_000;

/// The feeding side of the callback thread.
pub(crate) struct Callbacks {
    tx: flume::Sender<Settled>,
    progress: Arc<Progress>,
}

/// Results offered to the callback and results it has returned from.
#[derive(Default)]
struct Progress {
    offered: AtomicU64,
    done: AtomicU64,
    changed: Notify,
}

impl Callbacks {
    /// Starts the thread that calls `f`, with room for `capacity` waiting
    /// results. The thread ends once the runner and its tasks are gone.
    pub(crate) fn spawn(mut f: OnSettled, capacity: usize) -> std::io::Result<Self> {
        let (tx, rx) = flume::bounded::<Settled>(capacity.max(1));
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        std::thread::Builder::new()
            .name("conveyor-callbacks".into())
            .spawn(move || {
                for settled in rx.iter() {
                    if catch_unwind(AssertUnwindSafe(|| f(settled))).is_err() {
                        tracing::error!("on_task_complete panicked; the worker goes on");
                    }
                    p.done.fetch_add(1, Ordering::AcqRel);
                    p.changed.notify_waiters();
                }
            })?;
        Ok(Self { tx, progress })
    }

    /// Waits until the callback has returned from every result given to it,
    /// or `deadline` passes (a blocked callback holds up nobody for longer).
    pub(crate) async fn idle(&self, deadline: tokio::time::Instant) -> bool {
        let p = &self.progress;
        loop {
            let changed = p.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if p.done.load(Ordering::Acquire) >= p.offered.load(Ordering::Acquire) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    /// Offers a result to the callback without waiting.
    pub(crate) fn offer(&self, settled: Settled, counters: &Counters) {
        self.progress.offered.fetch_add(1, Ordering::AcqRel);
        if let Err(flume::TrySendError::Full(_)) = self.tx.try_send(settled) {
            self.progress.offered.fetch_sub(1, Ordering::AcqRel);
            Counters::add(&counters.callbacks_dropped, 1);
            let dropped = counters.callbacks_dropped.load(Ordering::Relaxed);
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "on_task_complete is falling behind: results it had no room for were not given to it (the source has them all)"
                );
            }
        }
    }
}
