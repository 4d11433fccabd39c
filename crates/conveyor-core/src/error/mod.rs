//! The one public error enum of conveyor's contracts and runtime, and the
//! classified failure of a store it carries.

mod backend_error;

use std::fmt;

pub use backend_error::{BackendError, BackendErrorKind};

use crate::TaskId;

/// Errors returned by conveyor's APIs (not by handlers: those return
/// [`TaskError`](crate::TaskError)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A durable backend's store failed (connection, disk, query), with its
    /// kind ([`BackendError::is_transient`]) and the driver's error as source.
    #[error(transparent)]
    Backend(BackendError),
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

impl Error {
    /// A store failure of `kind`, described by `message`.
    pub fn backend(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Error::Backend(BackendError::new(kind, message))
    }

    /// A store failure with no more specific kind.
    pub fn backend_other(message: impl Into<String>) -> Self {
        Self::backend(BackendErrorKind::Other, message)
    }

    /// True when the same call may succeed if tried again: a store that is
    /// unavailable, slow or contended. Stale leases, missing tasks, bad
    /// configuration, bad data and unsupported operations are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend(e) => e.is_transient(),
            Error::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    /// The kind of store failure, for [`Error::Backend`].
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            Error::Backend(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// The error and every cause under it, `: `-separated, for a log line.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }

    /// `e` and its causes on one line, as [`Error::chain`] writes them.
    pub(crate) fn chain_of(e: &(dyn std::error::Error + 'static)) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    /// The same error with the credentials of any URL in its text hidden
    /// ([`redact_secrets`](crate::redact_secrets)): for an error that may
    /// quote a URL the user gave, such as one from opening a backend.
    pub fn redacted(self) -> Error {
        let hide = |s: String| crate::redact_secrets(&s).into_owned();
        match self {
            Error::InvalidConfig(s) => Error::InvalidConfig(hide(s)),
            Error::Unsupported(s) => Error::Unsupported(hide(s)),
            Error::Codec(s) => Error::Codec(hide(s)),
            Error::Backend(e) => Error::Backend(e.redacted()),
            Error::Io(e) => {
                let text = e.to_string();
                match crate::redact_secrets(&text) {
                    std::borrow::Cow::Borrowed(_) => Error::Io(e),
                    std::borrow::Cow::Owned(t) => Error::Io(std::io::Error::new(e.kind(), t)),
                }
            }
            other => other,
        }
    }
}

/// An error and its causes on one line (see [`Error::chain`]).
#[derive(Debug)]
pub struct Chain<'a>(&'a Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[test]
    fn kinds_decide_what_is_transient() {
        let down = Error::Backend(
            BackendError::new(BackendErrorKind::Unavailable, "redis reserve").with_source(Refused),
        );
        assert!(down.is_transient());
        assert_eq!(down.backend_kind(), Some(BackendErrorKind::Unavailable));
        for kind in [
            BackendErrorKind::Data,
            BackendErrorKind::Config,
            BackendErrorKind::Other,
        ] {
            assert!(!Error::backend(kind, "x").is_transient(), "{kind:?}");
        }
        assert!(!Error::StaleLease(TaskId(1)).is_transient());
        assert!(!Error::Unsupported("x".into()).is_transient());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach redis://:hunter2@127.0.0.1:6380")]
    struct Quoting;

    #[test]
    fn redacted_hides_secrets_in_the_message_and_the_cause() {
        let e = Error::Backend(
            BackendError::new(BackendErrorKind::Unavailable, "open nats://tok@h:4222")
                .with_source(Quoting),
        )
        .redacted();
        assert!(e.is_transient(), "the kind is kept");
        assert_eq!(
            e.chain().to_string(),
            "open nats://***@h:4222: cannot reach redis://:***@127.0.0.1:6380"
        );
        let e = Error::InvalidConfig("bad URL \"postgres://u:pw@h/db\"".into()).redacted();
        assert_eq!(
            e.to_string(),
            "invalid configuration: bad URL \"postgres://u:***@h/db\""
        );
    }

    #[test]
    fn the_chain_shows_each_cause_once() {
        let down = Error::Backend(
            BackendError::new(BackendErrorKind::Unavailable, "redis reserve").with_source(Refused),
        );
        assert_eq!(down.to_string(), "redis reserve");
        assert_eq!(
            down.chain().to_string(),
            "redis reserve: connection refused"
        );
    }
}
