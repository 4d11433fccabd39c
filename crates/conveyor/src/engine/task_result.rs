//! The final result of one task, as the engine reports it: to a job's
//! result handler, to a task's own reply channel, or to a source's sink.

use std::sync::Arc;

use tokio::time::Instant;

use conveyor_core::{Outcome, TaskId};

use crate::engine::handler_name::HandlerName;
use crate::output::Output;

/// The final result of one task, as given to `on_task_complete`.
#[derive(Debug)]
pub struct TaskResult {
    /// The task's id.
    pub id: TaskId,
    /// The handler's name.
    pub handler: HandlerName,
    /// The ordering key, if the task had one.
    pub ordering_key: Option<Arc<str>>,
    /// Attempts started (0 when the task was cancelled before its first start).
    pub attempts: u32,
    /// How the task ended.
    pub outcome: Outcome<Output>,
    /// When the task was submitted.
    pub submitted_at: Instant,
    /// When the last attempt started, if one did.
    pub started_at: Option<Instant>,
    /// When the outcome was decided.
    pub finished_at: Instant,
}

impl TaskResult {
    /// The success value, if the task succeeded with a `T`.
    pub fn output<T: 'static>(&self) -> Option<&T> {
        match &self.outcome {
            Outcome::Succeeded(out) => out.downcast_ref::<T>(),
            _ => None,
        }
    }
}
