//! How the driver's failures become conveyor's [`Error::Backend`] with a
//! kind, so the worker knows what to retry.
//!
//! Every async-nats error is an `async_nats::error::Error<Kind>` with its own
//! kind enum per operation; they share names for the same causes
//! (`TimedOut`, `NoResponders`, `BrokenPipe`, …), which is what
//! [`classify`] reads. While the client is not connected (a server restart,
//! a network cut) every failure is [`BackendErrorKind::Unavailable`]:
//! async-nats reconnects by itself and the same call will pass once it has.
//! The driver's error stays the source, never flattened into the message.

use std::fmt::{Debug, Display};

use async_nats::connection::State;
use conveyor_core::{BackendError, BackendErrorKind, Error};

/// What kind of failure a driver error is, from its kind's name.
pub(crate) fn classify(kind: &str, state: State) -> BackendErrorKind {
    if state != State::Connected {
        return BackendErrorKind::Unavailable;
    }
    let has = |words: &[&str]| words.iter().any(|w| kind.contains(w));
    if has(&["TimedOut", "Timeout"]) {
        BackendErrorKind::Timeout
    } else if has(&[
        "NoResponders",
        "BrokenPipe",
        "Disconnected",
        "Publish",
        "Request",
        "Flush",
        "Subscribe",
        "ConsumerNotFound",
        "StreamNotFound",
    ]) {
        BackendErrorKind::Unavailable
    } else if has(&[
        "InvalidKey",
        "InvalidSubject",
        "InvalidName",
        "InvalidStreamName",
    ]) {
        BackendErrorKind::Config
    } else {
        BackendErrorKind::Other
    }
}

/// A driver error, with what was being done, as conveyor's error.
pub(crate) fn nats_error<K>(what: &str, e: async_nats::error::Error<K>, state: State) -> Error
where
    K: Clone + Debug + Display + PartialEq + Send + Sync + 'static,
{
    let mut kind = classify(&format!("{:?}", e.kind()), state);
    // A timeout some layers down (a listing's page request) is a timeout.
    if kind == BackendErrorKind::Other && format!("{e:?}").contains("TimedOut") {
        kind = BackendErrorKind::Timeout;
    }
    Error::Backend(BackendError::new(kind, format!("nats {what}")).with_source(e))
}

/// Stored data that does not decode: a bad record, a foreign message.
pub(crate) fn bad_data(message: impl Into<String>) -> Error {
    Error::backend(BackendErrorKind::Data, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name_and_connection() {
        let up = || State::Connected;
        assert_eq!(classify("TimedOut", up()), BackendErrorKind::Timeout);
        assert_eq!(
            classify("NoResponders", up()),
            BackendErrorKind::Unavailable
        );
        assert_eq!(classify("InvalidKey", up()), BackendErrorKind::Config);
        assert_eq!(classify("Other", up()), BackendErrorKind::Other);
        assert_eq!(
            classify("Other", State::Disconnected),
            BackendErrorKind::Unavailable
        );
    }
}

/// A boxed driver error (what a fetched batch yields), kept as a source.
#[derive(Debug)]
pub(crate) struct Boxed(pub(crate) Box<dyn std::error::Error + Send + Sync>);

impl Display for Boxed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Boxed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A boxed driver error, with what was being done, as conveyor's error.
pub(crate) fn boxed_error(
    what: &str,
    e: Box<dyn std::error::Error + Send + Sync>,
    state: State,
) -> Error {
    let kind = classify(&format!("{e:?}"), state);
    Error::Backend(BackendError::new(kind, format!("nats {what}")).with_source(Boxed(e)))
}
