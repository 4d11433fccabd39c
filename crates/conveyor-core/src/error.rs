//! The one public error enum of conveyor's contracts and runtime.

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
}
