//! The closed set of outcomes a task can end with.

use crate::TaskError;

/// How a task ended. The set is closed: every task ends with exactly one.
#[derive(Debug, Clone)]
pub enum Outcome<T> {
    /// The handler returned a value.
    Succeeded(T),
    /// The handler returned an error, on the last attempt or a permanent one.
    Failed(TaskError),
    /// The task was cancelled before or while it ran.
    Cancelled,
    /// The last attempt ran past its timeout.
    TimedOut,
    /// The handler panicked; the message of the panic.
    Panicked(String),
}

/// The kind of an [`Outcome`], without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// See [`Outcome::Succeeded`].
    Succeeded,
    /// See [`Outcome::Failed`].
    Failed,
    /// See [`Outcome::Cancelled`].
    Cancelled,
    /// See [`Outcome::TimedOut`].
    TimedOut,
    /// See [`Outcome::Panicked`].
    Panicked,
}

impl OutcomeKind {
    /// The kind's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Succeeded => "succeeded",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Cancelled => "cancelled",
            OutcomeKind::TimedOut => "timed_out",
            OutcomeKind::Panicked => "panicked",
        }
    }
}

impl<T> Outcome<T> {
    /// The kind of this outcome.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Succeeded(_) => OutcomeKind::Succeeded,
            Outcome::Failed(_) => OutcomeKind::Failed,
            Outcome::Cancelled => OutcomeKind::Cancelled,
            Outcome::TimedOut => OutcomeKind::TimedOut,
            Outcome::Panicked(_) => OutcomeKind::Panicked,
        }
    }

    /// True for [`Outcome::Succeeded`].
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded(_))
    }

    /// The value of a success.
    pub fn ok(self) -> Option<T> {
        match self {
            Outcome::Succeeded(v) => Some(v),
            _ => None,
        }
    }

    /// The error of a failure.
    pub fn error(&self) -> Option<&TaskError> {
        match self {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Maps the success value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Succeeded(v) => Outcome::Succeeded(f(v)),
            Outcome::Failed(e) => Outcome::Failed(e),
            Outcome::Cancelled => Outcome::Cancelled,
            Outcome::TimedOut => Outcome::TimedOut,
            Outcome::Panicked(m) => Outcome::Panicked(m),
        }
    }

    /// Converts into a `Result`, describing every non-success as a [`TaskError`].
    pub fn into_result(self) -> Result<T, TaskError> {
        match self {
            Outcome::Succeeded(v) => Ok(v),
            Outcome::Failed(e) => Err(e),
            Outcome::Cancelled => Err(TaskError::permanent("cancelled")),
            Outcome::TimedOut => Err(TaskError::new("timed out")),
            Outcome::Panicked(m) => Err(TaskError::permanent(format!("panicked: {m}"))),
        }
    }
}
