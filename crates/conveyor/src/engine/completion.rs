//! Where the final result of a task owned by a source goes.
//!
//! A job's tasks report to its bounded result queue and result thread, or
//! each to its own reply channel (map helpers, pipelines). A task fed by a
//! source (a durable backend, a stream) reports straight to the source's
//! runner instead: the worker that settles the task calls the sink in place,
//! so the outcome reaches the acknowledgement path with no queue and no
//! thread hop, and no user callback stands in its way.

use conveyor_core::{Error, NewTask, TaskId};

use crate::engine::task_result::TaskResult;

/// What an attempt runs under: the context of its span, made current while
/// the handler runs (feature `otel`).
#[cfg(feature = "otel")]
pub(crate) type AttemptScope = Option<opentelemetry::Context>;

/// What an attempt runs under: nothing without the `otel` feature.
#[cfg(not(feature = "otel"))]
pub(crate) type AttemptScope = ();

/// What a sink says when an attempt starts.
#[derive(Default)]
pub(crate) struct AttemptStart {
    /// What the attempt runs under (its span, with the `otel` feature).
    pub(crate) scope: AttemptScope,
    /// The attempt number as the source counts it, when the source counts
    /// attempts across deliveries (the engine then runs one attempt per
    /// delivery and would say 1).
    pub(crate) attempt: Option<u32>,
}

/// Takes the final results of a source's tasks.
pub(crate) trait CompletionSink: Send + Sync + 'static {
    /// Called when an attempt of task `id` starts, on the engine worker
    /// that runs it. Must be cheap: most sinks return at once. Returns what
    /// the attempt runs under and its number as the source counts it.
    fn started(&self, id: TaskId, attempt: u32) -> AttemptStart {
        let _ = (id, attempt);
        AttemptStart::default()
    }

    /// Called once per task, on the engine worker that settled it. It must
    /// not block: it decides, queues and returns.
    fn complete(&self, result: TaskResult);

    /// Keeps `task` to enqueue with task `id`'s settlement if its running
    /// attempt succeeds (see [`TaskContext::follow_up`](crate::TaskContext::follow_up)).
    fn follow_up(&self, id: TaskId, task: NewTask) -> Result<(), Error> {
        let _ = (id, task);
        Err(Error::Unsupported(
            "this source cannot enqueue follow-up tasks".into(),
        ))
    }
}
