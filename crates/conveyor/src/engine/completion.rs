//! Where the final result of a task owned by a source goes.
//!
//! A job's tasks report to its bounded result queue and result thread, or
//! each to its own reply channel (map helpers, pipelines). A task fed by a
//! source (a durable backend, a stream) reports straight to the source's
//! runner instead: the worker that settles the task calls the sink in place,
//! so the outcome reaches the acknowledgement path with no queue and no
//! thread hop, and no user callback stands in its way.

use conveyor_core::TaskId;

use crate::results::TaskResult;

/// Takes the final results of a source's tasks.
pub(crate) trait CompletionSink: Send + Sync + 'static {
    /// Called when an attempt of task `id` starts, on the engine worker
    /// that runs it. Must be cheap: most sinks return at once.
    fn started(&self, id: TaskId, attempt: u32) {
        let _ = (id, attempt);
    }

    /// Called once per task, on the engine worker that settled it. It must
    /// not block: it decides, queues and returns.
    fn complete(&self, result: TaskResult);
}
