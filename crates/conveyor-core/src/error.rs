//! The one public error enum of conveyor's contracts and runtime.

use crate::TaskId;

/// Errors returned by conveyor's APIs (not by handlers: those return
/// [`TaskError`](crate::TaskError)).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job no longer accepts tasks: its producers are closed or it was cancelled.
    #[error("the job is closed to new tasks")]
    Closed,
    /// The job's queue is full (from `try_submit`, which does not wait).
    #[error("the job's queue is full")]
    QueueFull,
    /// The pool is shutting down and accepts no new work.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An operation this backend or lane does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An I/O error from the operating system (spawning threads or processes).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A durable backend's store failed (connection, disk, query).
    #[error("backend error: {0}")]
    Backend(String),
    /// A report carried a lease token that is no longer the task's: its lease ran
    /// out and the task was reserved again (or finished) since.
    #[error("task {0}: the lease is no longer held (stale attempt token)")]
    StaleLease(TaskId),
    /// No task with this id (never enqueued, or pruned).
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// Params or a result could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// A durable task ended without success: dead-lettered, cancelled or discarded.
    #[error("task {id} ended {state}: {error}")]
    TaskFailed {
        /// The task.
        id: TaskId,
        /// Its final state (`dead` or `cancelled`).
        state: crate::TaskState,
        /// Its last error, or why it was cancelled.
        error: String,
    },
    /// A wait ran out before the task finished.
    #[error("timed out waiting for task {0}")]
    WaitTimeout(TaskId),
}
