//! A job as the engine keeps it: its cancellation, its queue capacity, where
//! its results go, its failure limit, and the engine it runs on. Every task
//! of the job holds it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use conveyor_core::{OutcomeKind, TaskId};

use crate::engine::cancel::Cancels;
use crate::engine::completion::CompletionSink;
use crate::engine::envelope::{Event, Padded};
use crate::engine::instance::Engine;
use crate::engine::result_queue::ResultSender;
use crate::engine::spent::SpentEnvelopes;

/// What every task of one job shares. Aligned to a cache line, so the fields
/// read for every task never share one with the `Arc`'s counts, which change
/// for every task. Dropping the last reference (the last
/// producer and the last unreported task) disconnects the job's result queue,
/// which completes the job.
#[repr(align(64))]
pub(crate) struct JobState {
    /// Cancels every task of the job (a child of the pool's token).
    pub(crate) token: CancellationToken,
    /// Set with `token`, so hot paths can check it without a lock.
    pub(crate) cancelled: AtomicBool,
    /// Tasks cancelled by id, and the wake-up of the job's waiting attempts.
    pub(crate) cancels: Arc<Cancels>,
    /// Permits for tasks submitted but not yet started: the job's queue
    /// capacity. Padded: producers and workers change it all the time.
    pub(crate) capacity: Padded<Semaphore>,
    /// The job's result queue; `None` when each task replies on its own
    /// channel or the job has a sink.
    pub(crate) results: Option<ResultSender>,
    /// The source runner that takes the job's results, if the job feeds one.
    pub(crate) sink: Option<Arc<dyn CompletionSink>>,
    /// The engine the job runs on.
    pub(crate) engine: Arc<Engine>,
    /// Stops the job's tasks from starting after so many failures, if set.
    pub(crate) halt: Option<Halt>,
    /// Settled tasks' envelopes handed back to the producers to free; shared,
    /// so workers keep a handle on it that holds no job open.
    pub(crate) spent: Arc<SpentEnvelopes>,
}

impl fmt::Debug for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobState")
    }
}

/// A job's failure limit: once `after` tasks have failed (failed, timed out
/// or panicked, after their last attempt), no other task of the job starts.
/// Counted by the worker that settles the outcome, before it takes its next
/// task, so with one worker not a single task starts after the limit.
pub(crate) struct Halt {
    after: u64,
    failures: AtomicU64,
    halted: AtomicBool,
}

impl Halt {
    pub(crate) fn new(after: u64) -> Self {
        Self {
            after: after.max(1),
            failures: AtomicU64::new(0),
            halted: AtomicBool::new(false),
        }
    }

    /// Counts a final outcome of `kind`; true if it is the one that halts.
    fn count(&self, kind: OutcomeKind) -> bool {
        matches!(
            kind,
            OutcomeKind::Failed | OutcomeKind::TimedOut | OutcomeKind::Panicked
        ) && self.failures.fetch_add(1, Ordering::SeqCst) + 1 >= self.after
            && !self.halted.swap(true, Ordering::SeqCst)
    }
}

impl JobState {
    /// A new job on `engine`, its cancellation registered with it.
    pub(crate) fn new(
        engine: &Arc<Engine>,
        capacity: usize,
        results: Option<ResultSender>,
        halt: Option<Halt>,
    ) -> Arc<JobState> {
        Self::with_sink(engine, capacity, results, None, halt)
    }

    /// Like [`JobState::new`], with the results going to `sink`.
    pub(crate) fn with_sink(
        engine: &Arc<Engine>,
        capacity: usize,
        results: Option<ResultSender>,
        sink: Option<Arc<dyn CompletionSink>>,
        halt: Option<Halt>,
    ) -> Arc<JobState> {
        let cancels = Arc::new(Cancels::new(Arc::downgrade(engine)));
        engine.register(&cancels);
        Arc::new(JobState {
            token: engine.token.child_token(),
            cancelled: AtomicBool::new(false),
            cancels,
            capacity: Padded(Semaphore::new(capacity)),
            results,
            sink,
            engine: engine.clone(),
            halt,
            spent: Arc::new(SpentEnvelopes::closed()),
        })
    }

    /// True once the job or its pool was cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.engine.stopped.load(Ordering::Relaxed)
    }

    /// True once the job's failure limit is reached: its tasks no longer start.
    pub(crate) fn is_halted(&self) -> bool {
        self.halt
            .as_ref()
            .is_some_and(|h| h.halted.load(Ordering::Relaxed))
    }

    /// Counts a task's final outcome against the job's failure limit. At the
    /// limit the dispatcher is asked to let the job's waiting tasks go (as for
    /// a cancellation), so none waits for a key, a rate or a delay only to be
    /// skipped.
    pub(crate) fn count_outcome(&self, kind: OutcomeKind) {
        if self.halt.as_ref().is_some_and(|h| h.count(kind)) {
            let _ = self.engine.events.send(Event::Sweep);
        }
    }

    /// True when task `id` of this job, the job or its pool was cancelled.
    pub(crate) fn task_cancelled(&self, id: TaskId) -> bool {
        self.is_cancelled() || self.cancels.contains(id)
    }

    /// Completes once task `id`, the job or its pool is cancelled: one
    /// registration, on the job's [`Cancels`].
    pub(crate) async fn wait_cancelled(&self, id: TaskId) {
        self.cancels.wait(|| self.task_cancelled(id)).await
    }

    /// Cancels every task of the job.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.token.cancel();
        self.cancels.wake_all();
        let _ = self.engine.events.send(Event::Sweep);
    }
}
