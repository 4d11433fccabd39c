//! What a running handler knows about its task.

use std::sync::Arc;

use conveyor_core::{Error, NewTask, TaskId};
use tokio::time::Instant;

use crate::engine::job_ref::JobRef;

/// Passed to every handler call: the task's identity and attempt, and a way to
/// notice cancellation (job or task cancelled, pool shut down, or — in the cpu
/// lane, where a thread cannot be pre-empted — the attempt's timeout passed).
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) id: TaskId,
    /// The attempt as the task's source counts it, else as the engine does.
    pub(crate) attempt: u32,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) job: Arc<JobRef>,
    pub(crate) deadline: Option<Instant>,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("key", &self.key)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl TaskContext {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The attempt being run, starting at 1. For a task from a durable
    /// queue, it counts every delivery of the task (the third delivery is
    /// attempt 3, whichever worker ran the first two).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The task's ordering key, if it has one.
    pub fn ordering_key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// True once the attempt should stop. CPU handlers that run long should check
    /// this now and then and return early.
    pub fn is_cancelled(&self) -> bool {
        self.job.task_cancelled(self.id) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// When the attempt's timeout passes, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Completes once the task, its job or the pool is cancelled.
    ///
    /// The timeout is not among these: at the deadline the engine drops an
    /// io-lane attempt itself (so a handler waiting here is timed out, never
    /// allowed to return a success late), and cpu-lane code sees the deadline
    /// through [`TaskContext::is_cancelled`].
    pub async fn cancelled(&self) {
        self.job.wait_cancelled(self.id).await
    }

    /// Enqueues `task` **if this attempt succeeds**, in the same atomic step
    /// (one transaction, one script) as the success is recorded: a workflow's
    /// next step is never lost between a finish and an enqueue (a worker
    /// killed in between records neither, and the task runs again), and
    /// never enqueued by an attempt that failed or whose lease ran out.
    ///
    /// Build the task with [`TaskType::task`](crate::TaskType::task) or
    /// [`NewTask`]. Errors at once when the task is invalid, and with
    /// [`Error::Unsupported`] where the task did not come from a source that
    /// can enqueue (an in-process job, a Kafka consumer).
    pub fn follow_up(&self, task: NewTask) -> Result<(), Error> {
        task.validate()?;
        match &self.job.sink {
            Some(sink) => sink.follow_up(self.id, task),
            None => Err(Error::Unsupported(
                "follow-up tasks need a durable worker: an in-process job has no queue to \
                 enqueue them into"
                    .into(),
            )),
        }
    }
}
