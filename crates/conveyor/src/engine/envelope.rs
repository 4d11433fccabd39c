//! The engine's internal form of a task, and the events the dispatcher
//! receives.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use conveyor_core::TaskId;

use crate::engine::job_state::JobState;
use crate::engine::task_result::TaskResult;
use crate::engine::work::HandlerCore;

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
    pub(crate) job: Arc<JobState>,
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
        job: Arc<JobState>,
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
