//! A store's failure, classified: what kind of failure it is (so callers can
//! tell a passing outage from a lasting fault) and the driver's own error,
//! kept as the source rather than flattened into text.

use std::fmt;

/// What kind of failure a [`BackendError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The store cannot be reached now: connection refused, reset or closed,
    /// the server starting or shutting down. Transient.
    Unavailable,
    /// The store did not answer in time. Transient.
    Timeout,
    /// Contention: a lock held by another (SQLite busy, a serialization
    /// failure or deadlock in PostgreSQL). Transient.
    Busy,
    /// Data in the store does not fit what conveyor expects (an undecodable
    /// row, a corrupt file). Retrying does not help.
    Data,
    /// A value over what the store holds (a task's params or a result past
    /// its [`ValueLimit`](crate::ValueLimit)): refused before it was sent.
    /// Retrying does not help.
    TooLarge,
    /// Configuration or permission: bad credentials, a missing schema, a
    /// database that refuses the operation. Retrying does not help.
    Config,
    /// Anything else.
    Other,
}

impl BackendErrorKind {
    /// True for failures that may pass if the same call is tried again.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            BackendErrorKind::Unavailable | BackendErrorKind::Timeout | BackendErrorKind::Busy
        )
    }

    /// A short name: `unavailable`, `timeout`, `busy`, `data`, `too_large`,
    /// `config`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendErrorKind::Unavailable => "unavailable",
            BackendErrorKind::Timeout => "timeout",
            BackendErrorKind::Busy => "busy",
            BackendErrorKind::Data => "data",
            BackendErrorKind::TooLarge => "too_large",
            BackendErrorKind::Config => "config",
            BackendErrorKind::Other => "other",
        }
    }
}

/// A store's failure: its kind, what conveyor was doing, and the driver's
/// error as the source.
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// A failure of `kind`, described by `message` (what was being done).
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same failure, caused by `source` (the driver's error).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Its kind.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// What was being done.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the same call may succeed if tried again.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The same failure with the credentials of any URL in its message and
    /// its source's text hidden ([`redact_secrets`](crate::redact_secrets));
    /// the source is then kept as that text. Unchanged (source and all)
    /// when there was nothing to hide.
    pub fn redacted(self) -> Self {
        let source_text = self.source.as_ref().map(|s| crate::Error::chain_of(&**s));
        let message = crate::redact_secrets(&self.message);
        let source = source_text.as_deref().map(crate::redact_secrets);
        let changed = matches!(message, std::borrow::Cow::Owned(_))
            || matches!(source, Some(std::borrow::Cow::Owned(_)));
        if !changed {
            return self;
        }
        Self {
            kind: self.kind,
            message: message.into_owned(),
            source: source.map(|s| Box::new(Redacted(s.into_owned())) as Box<_>),
        }
    }
}

/// A driver's error, as text with its secrets hidden.
#[derive(Debug)]
struct Redacted(String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

impl fmt::Display for BackendError {
    /// The message only: the cause is the [`source`](std::error::Error::source),
    /// shown by error reporters that walk the chain (and by
    /// [`Error::chain`](crate::Error::chain)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
