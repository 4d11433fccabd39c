//! The engine's internal form of a task, of a job, and the events the
//! dispatcher receives.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use conveyor_core::{OutcomeKind, TaskId};

use crate::engine::cancel::Cancels;
use crate::engine::completion::CompletionSink;
use crate::engine::result_queue::ResultSender;
use crate::engine::spent::SpentEnvelopes;
use crate::handler::HandlerCore;
use crate::pool::PoolShared;
use crate::results::TaskResult;

/// A value on cache lines of its own, so writes to it (or to its neighbours)
/// never slow down reads of the other.
#[repr(align(64))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// What every task of one job shares. Aligned to a cache line, so the fields
/// read for every task never share one with the `Arc`'s counts, which change
/// for every task. Dropping the last reference (the last
/// producer and the last unreported task) disconnects the job's result queue,
/// which completes the job.
#[repr(align(64))]
pub(crate) struct JobShared {
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
    /// The pool the job runs on.
    pub(crate) pool: Arc<PoolShared>,
    /// Stops the job's tasks from starting after so many failures, if set.
    pub(crate) halt: Option<Halt>,
    /// Settled tasks' envelopes handed back to the producers to free; shared,
    /// so workers keep a handle on it that holds no job open.
    pub(crate) spent: Arc<SpentEnvelopes>,
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

impl JobShared {
    /// A new job on `pool`, its cancellation registered with the pool.
    pub(crate) fn new(
        pool: &Arc<PoolShared>,
        capacity: usize,
        results: Option<ResultSender>,
        halt: Option<Halt>,
    ) -> Arc<JobShared> {
        Self::with_sink(pool, capacity, results, None, halt)
    }

    /// Like [`JobShared::new`], with the results going to `sink`.
    pub(crate) fn with_sink(
        pool: &Arc<PoolShared>,
        capacity: usize,
        results: Option<ResultSender>,
        sink: Option<Arc<dyn CompletionSink>>,
        halt: Option<Halt>,
    ) -> Arc<JobShared> {
        let cancels = Arc::new(Cancels::new(Arc::downgrade(pool)));
        pool.register(&cancels);
        Arc::new(JobShared {
            token: pool.token.child_token(),
            cancelled: AtomicBool::new(false),
            cancels,
            capacity: Padded(Semaphore::new(capacity)),
            results,
            sink,
            pool: pool.clone(),
            halt,
            spent: Arc::new(SpentEnvelopes::closed()),
        })
    }

    /// True once the job or its pool was cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.pool.stopped.load(Ordering::Relaxed)
    }

    /// True once the job's failure limit is reached: its tasks no longer start.
    fn is_halted(&self) -> bool {
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
            let _ = self.pool.events.send(Event::Sweep);
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
        let _ = self.pool.events.send(Event::Sweep);
    }
}

/// A dispatcher-managed task's handler slot (and key) to free.
pub(crate) struct Release {
    pub(crate) slot: usize,
    pub(crate) key: Option<Arc<str>>,
}

/// A task handed to the workers. `slot` is the dispatcher's handler slot for
/// tasks that went through the dispatcher (their limits are freed when they
/// finish); tasks on the fast path have none.
pub(crate) struct Ready {
    pub(crate) env: Box<Envelope>,
    pub(crate) slot: Option<usize>,
}

/// One task inside the engine, in one allocation: the header the engine reads,
/// then the task's params. The engine holds it as `Box<Envelope>`, with the
/// params erased to `dyn Any`; they are an `Option<In>`, cloned for an attempt
/// that may be retried and taken by the last one.
pub(crate) struct Envelope<P: ?Sized = dyn Any + Send> {
    pub(crate) id: TaskId,
    /// The task's handler, until its result takes it over ([`Envelope::handler`]).
    handler: Option<Arc<HandlerCore>>,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_attempts: u32,
    /// Attempts started so far.
    pub(crate) attempt: u32,
    pub(crate) not_before: Option<Instant>,
    pub(crate) submitted_at: Instant,
    pub(crate) job: Arc<JobShared>,
    /// Where the result goes when the job has no result queue.
    pub(crate) reply: Option<oneshot::Sender<TaskResult>>,
    /// The task holds its ordering key (it is the key's running or next task).
    pub(crate) holds_key: bool,
    /// The task still holds one of the job's capacity permits.
    pub(crate) holds_permit: bool,
    /// The task goes through the dispatcher (it has a key, a delay or a limited
    /// handler); otherwise it goes straight to the workers.
    pub(crate) managed: bool,
    /// The params, an `Option<In>` (last, so the struct can be unsized).
    pub(crate) params: P,
}

impl<P> Envelope<P> {
    /// A new task's envelope, before its params are erased.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: TaskId,
        handler: Arc<HandlerCore>,
        key: Option<Arc<str>>,
        timeout: Option<Duration>,
        max_attempts: u32,
        not_before: Option<Instant>,
        submitted_at: Instant,
        job: Arc<JobShared>,
        reply: Option<oneshot::Sender<TaskResult>>,
        managed: bool,
        params: P,
    ) -> Self {
        Self {
            id,
            handler: Some(handler),
            key,
            timeout,
            max_attempts,
            attempt: 0,
            not_before,
            submitted_at,
            job,
            reply,
            holds_key: false,
            holds_permit: true,
            managed,
            params,
        }
    }
}

/// The text of the one panic an envelope can raise: an internal error, never
/// caused by a task's data.
const SETTLED: &str = "a task's handler is read only before its result takes it over";

impl Envelope {
    /// The task's handler. Only a settled task's envelope, kept to be freed
    /// with others, has none, and nothing reads it then.
    pub(crate) fn handler(&self) -> &Arc<HandlerCore> {
        self.handler.as_ref().expect(SETTLED)
    }

    /// The handler and the params, borrowed together to run an attempt.
    pub(crate) fn handler_and_params(&mut self) -> (&HandlerCore, &mut (dyn Any + Send)) {
        (self.handler.as_deref().expect(SETTLED), &mut self.params)
    }

    /// Hands the task's handler over to its result.
    pub(crate) fn take_handler(&mut self) -> Arc<HandlerCore> {
        self.handler.take().expect(SETTLED)
    }

    /// True when the task, its job or its pool was cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.job.task_cancelled(self.id)
    }

    /// True when the task must not start: it, its job or its pool was
    /// cancelled, or its job reached its failure limit. Workers and the
    /// dispatcher let such a task go without running (`Cancelled`).
    pub(crate) fn must_not_start(&self) -> bool {
        self.is_cancelled() || self.job.is_halted()
    }

    /// Gives back the job's capacity permit once the task leaves the queue.
    pub(crate) fn release_permit(&mut self) {
        if self.holds_permit {
            self.holds_permit = false;
            self.job.capacity.add_permits(1);
        }
    }

    /// What frees a managed task's dispatcher slot (`slot`) and its key, if it
    /// holds one; `None` for a fast-path task.
    pub(crate) fn release(&self, slot: Option<usize>) -> Option<Release> {
        slot.map(|slot| Release {
            slot,
            key: if self.holds_key {
                self.key.clone()
            } else {
                None
            },
        })
    }

    /// Takes the permit off the task without giving it back (the caller returns
    /// permits in bulk).
    pub(crate) fn take_permit(&mut self) -> bool {
        std::mem::replace(&mut self.holds_permit, false)
    }
}

/// What the dispatcher is told.
pub(crate) enum Event {
    /// A new task.
    Submit(Box<Envelope>),
    /// A managed task has its final outcome: free its slot and key.
    Released(Release),
    /// A started task failed and runs again at `at`: free its slot, keep its key.
    Retry {
        env: Box<Envelope>,
        slot: Option<usize>,
        at: Instant,
    },
    /// Some task or job was cancelled: take cancelled tasks out of the queues.
    Sweep,
    /// Graceful shutdown: start nothing more; reply with how many tasks never
    /// started.
    Drain(oneshot::Sender<u64>),
}
