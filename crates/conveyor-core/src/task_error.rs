//! The error a handler returns, and what it asks the engine to do next.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a failed attempt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A transient failure: retry with backoff while attempts remain.
    Retryable,
    /// Retry, but not before this delay (overrides the backoff), while attempts remain.
    RetryAfter(Duration),
    /// A permanent failure: never retry; the outcome is final.
    Permanent,
    /// Drop the task quietly: no retry and no dead-letter.
    Discard,
}

/// The error of a failed attempt: a message, what to do next, and optionally the
/// source error and a typed detail (for example the captured output of a process).
///
/// Any `std::error::Error` converts into a retryable `TaskError`, so handlers can use
/// `?`. Like `anyhow::Error`, `TaskError` itself does not implement
/// `std::error::Error`; that is what makes the blanket conversion possible.
///
/// One pointer wide: its parts live behind a box, so every `Result` and
/// outcome that may hold an error stays small on the hot path, where tasks
/// succeed and their results are moved from worker to result queue to
/// callback.
#[derive(Clone)]
pub struct TaskError(Box<Parts>);

#[derive(Clone)]
struct Parts {
    kind: ErrorKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    detail: Option<Arc<dyn Any + Send + Sync>>,
}

impl TaskError {
    /// A retryable error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(Box::new(Parts {
            kind: ErrorKind::Retryable,
            message: message.into(),
            source: None,
            detail: None,
        }))
    }

    /// A permanent error: the task is not retried.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(message).with_kind(ErrorKind::Permanent)
    }

    /// A retryable error that asks to be retried after `delay` rather than after the
    /// handler's backoff.
    pub fn retry_after(delay: Duration, message: impl Into<String>) -> Self {
        Self::new(message).with_kind(ErrorKind::RetryAfter(delay))
    }

    /// Asks the engine to drop the task: no retry, no dead-letter.
    pub fn discard(message: impl Into<String>) -> Self {
        Self::new(message).with_kind(ErrorKind::Discard)
    }

    /// Changes what the error asks for.
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// Marks the error permanent.
    pub fn into_permanent(self) -> Self {
        self.with_kind(ErrorKind::Permanent)
    }

    /// Attaches a typed detail, readable later with [`TaskError::detail`].
    pub fn with_detail<D: Any + Send + Sync>(mut self, detail: D) -> Self {
        self.0.detail = Some(Arc::new(detail));
        self
    }

    /// What the error asks for.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// True when the error allows another attempt.
    pub fn is_retryable(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Retryable | ErrorKind::RetryAfter(_))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The source error, if the error was converted from one.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.0.source.as_deref()
    }

    /// The typed detail attached with [`TaskError::with_detail`], if it is a `D`.
    pub fn detail<D: Any>(&self) -> Option<&D> {
        self.0.detail.as_deref().and_then(|d| d.downcast_ref::<D>())
    }
}

impl<E> From<E> for TaskError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self(Box::new(Parts {
            kind: ErrorKind::Retryable,
            message,
            source: Some(Arc::new(err)),
            detail: None,
        }))
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("kind", &self.0.kind)
            .field("message", &self.0.message)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_errors_convert_with_their_chain() {
        let io = std::io::Error::other("disk on fire");
        let err: TaskError = io.into();
        assert_eq!(err.message(), "disk on fire");
        assert!(err.is_retryable());
        assert!(err.source().is_some());
    }

    #[test]
    fn kinds_decide_retry() {
        assert!(!TaskError::permanent("no").is_retryable());
        assert!(!TaskError::discard("no").is_retryable());
        assert!(TaskError::retry_after(Duration::from_secs(1), "later").is_retryable());
    }

    #[test]
    fn detail_downcasts() {
        let err = TaskError::new("x").with_detail(42u32);
        assert_eq!(err.detail::<u32>(), Some(&42));
        assert_eq!(err.detail::<i64>(), None);
    }

    #[test]
    fn an_error_is_one_pointer_wide() {
        assert_eq!(
            std::mem::size_of::<TaskError>(),
            std::mem::size_of::<usize>()
        );
    }
}
