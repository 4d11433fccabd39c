//! The user's `on_task_complete` for a runner, off the settlement path.
//!
//! The source has answered every settlement before a callback hears of it
//! ([`Settled::stored`] says what it did): the callback observes, it does
//! not acknowledge. So it runs on a thread of its
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

use crate::engine::task_result::TaskResult;

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
    /// The trace id of the attempt's span (feature `otel`; `None` without
    /// it), for log lines that join up with the trace.
    pub trace_id: Option<String>,
    /// What the source did with the settlement.
    pub stored: Stored,
}

/// What the source did with a task's settlement, as its callback hears.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stored {
    /// The source took it: the store says what [`Settled::step`] says.
    Taken,
    /// Refused: the claim had run out, and the store had taken the task back
    /// (it runs again, maybe elsewhere, or was dead-lettered if no attempt
    /// was left) or it had finished. Nothing this worker reported was kept.
    Stale,
    /// Not stored (the store kept failing until the worker stopped, or
    /// refused it for good), with why: the claim runs out and the task runs
    /// again.
    Lost(String),
}

/// Called with every settled task, on the runner's callback thread.
pub type OnSettled = Box<dyn FnMut(Settled) + Send>;

/// How many settled tasks may wait for a slow callback by default.
pub const DEFAULT_CALLBACK_CAPACITY: usize = 10_000;

/// A bounded, lossy hand-off of items to a callback on a thread of its own:
/// whoever offers never waits, so a slow or blocked callback delays nothing
/// but itself. Items that find the queue full are not delivered ([`offer`]
/// says so). The thread ends once the queue is dropped and drained.
///
/// [`offer`]: CallbackQueue::offer
pub struct CallbackQueue<T> {
    tx: flume::Sender<T>,
    progress: Arc<Progress>,
}

impl<T> std::fmt::Debug for CallbackQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackQueue")
            .field("waiting", &self.tx.len())
            .finish()
    }
}

/// Items offered to the callback and items it has returned from.
#[derive(Default)]
struct Progress {
    offered: AtomicU64,
    done: AtomicU64,
    changed: Notify,
}

impl<T: Send + 'static> CallbackQueue<T> {
    /// Starts a thread named `name` that calls `f` with each item, with room
    /// for `capacity` waiting items. A panic in `f` is logged and the thread
    /// goes on.
    pub fn spawn(
        name: &str,
        capacity: usize,
        mut f: impl FnMut(T) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = flume::bounded::<T>(capacity.max(1));
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for item in rx.iter() {
                    if catch_unwind(AssertUnwindSafe(|| f(item))).is_err() {
                        tracing::error!("a callback panicked; its thread goes on");
                    }
                    p.done.fetch_add(1, Ordering::AcqRel);
                    p.changed.notify_waiters();
                }
            })?;
        Ok(Self { tx, progress })
    }

    /// Offers an item without waiting; `false` when the queue was full (or
    /// the thread is gone) and the item was dropped.
    pub fn offer(&self, item: T) -> bool {
        self.progress.offered.fetch_add(1, Ordering::AcqRel);
        if self.tx.try_send(item).is_ok() {
            return true;
        }
        self.progress.offered.fetch_sub(1, Ordering::AcqRel);
        false
    }

    /// Waits until the callback has returned from every item given to it,
    /// or `deadline` passes (a blocked callback holds up nobody for longer);
    /// true if it did.
    pub async fn idle(&self, deadline: tokio::time::Instant) -> bool {
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
}

/// The runner's `on_task_complete`: a [`CallbackQueue`] of settled tasks that
/// counts what it drops.
pub(crate) struct Callbacks {
    queue: CallbackQueue<Settled>,
}

impl Callbacks {
    /// Starts the callback thread with room for `capacity` waiting results.
    pub(crate) fn spawn(mut f: OnSettled, capacity: usize) -> std::io::Result<Self> {
        // The result lets go of its handler here, off the workers' path.
        let f = move |mut settled: Settled| {
            settled.result.handler.detach();
            f(settled)
        };
        let queue = CallbackQueue::spawn("conveyor-callbacks", capacity, f)?;
        Ok(Self { queue })
    }

    /// See [`CallbackQueue::idle`].
    pub(crate) async fn idle(&self, deadline: tokio::time::Instant) -> bool {
        self.queue.idle(deadline).await
    }

    /// Offers a result to the callback without waiting.
    pub(crate) fn offer(&self, settled: Settled, counters: &Counters) {
        if !self.queue.offer(settled) {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use conveyor_core::Outcome;
    use tokio::time::Instant;

    use super::*;
    use crate::engine::handler_name::HandlerName;
    use crate::{Handler, Output, TaskError};

    #[tokio::test]
    async fn a_settled_result_reaches_the_callback_without_its_handler() {
        let h = Handler::io("h", |i: u32, _ctx| async move { Ok::<_, TaskError>(i) });
        let weak = Arc::downgrade(&h.core);
        let kept = Arc::new(Mutex::new(Vec::new()));
        let into = kept.clone();
        let callbacks = Callbacks::spawn(
            Box::new(move |s: Settled| into.lock().expect("kept").push(s)),
            4,
        )
        .expect("callback thread");
        let now = Instant::now();
        let result = TaskResult {
            id: TaskId(1),
            handler: HandlerName::new(h.core.clone()),
            ordering_key: None,
            attempts: 1,
            outcome: Outcome::Succeeded(Output::new(1u32)),
            submitted_at: now,
            started_at: Some(now),
            finished_at: now,
        };
        let settled = Settled {
            id: TaskId(1),
            queue: Arc::from("q"),
            attempt: 1,
            step: NextStep::Done,
            error: None,
            result,
            trace_id: None,
            stored: Stored::Taken,
        };
        callbacks.offer(settled, &Counters::default());
        drop(h);
        assert!(
            callbacks
                .idle(Instant::now() + std::time::Duration::from_secs(10))
                .await,
            "the callback ran"
        );
        let kept = kept.lock().expect("kept");
        assert_eq!(kept[0].result.handler, "h");
        assert!(weak.upgrade().is_none(), "the kept result holds no handler");
    }
}
