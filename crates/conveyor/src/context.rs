//! What a running handler knows about its task.

use std::sync::Arc;

use conveyor_core::TaskId;
use tokio::time::Instant;

use crate::cancel::Cancel;
use crate::envelope::JobShared;

/// One timer tick: how much later than the engine's timeout `cancelled()`
/// observes the deadline.
const DEADLINE_TICK: std::time::Duration = std::time::Duration::from_millis(1);

/// Passed to every handler call: the task's identity and attempt, and a way to
/// notice cancellation (job or task cancelled, pool shut down, or — in the cpu
/// lane, where a thread cannot be pre-empted — the attempt's timeout passed).
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) id: TaskId,
    pub(crate) attempt: u32,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) task_token: Cancel,
    pub(crate) job: Arc<JobShared>,
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

    /// The attempt being run, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The task's ordering key, if it has one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// True once the attempt should stop. CPU handlers that run long should check
    /// this now and then and return early.
    pub fn is_cancelled(&self) -> bool {
        self.task_token.is_cancelled()
            || self.job.is_cancelled()
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// When the attempt's timeout passes, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Completes once the attempt should stop.
    ///
    /// At the deadline the engine's own timeout fires first (this waits one
    /// timer tick longer), so a handler that returns when it sees the deadline
    /// still ends as timed out, never as a success.
    pub async fn cancelled(&self) {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d + DEADLINE_TICK).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.task_token.cancelled() => {}
            _ = self.job.token.cancelled() => {}
            _ = deadline => {}
        }
    }
}
