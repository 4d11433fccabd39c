//! Turning driver and pool failures into the contract's [`Error::Backend`].
//!
//! The contract has one error enum (in `conveyor-core`); a database failure is
//! [`Error::Backend`] with a message that says what the backend was doing and
//! what PostgreSQL answered (its message, detail and hint), so an operator can
//! act on the log line alone.

use std::error::Error as _;

use conveyor_core::Error;

/// A driver error while doing `what`.
pub(crate) fn db(what: &str, e: tokio_postgres::Error) -> Error {
    let mut msg = format!("postgres: {what}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    Error::Backend(msg)
}

/// A pool failure (no connection could be had) while doing `what`.
pub(crate) fn pool(what: &str, e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(what, e),
        other => Error::Backend(format!("postgres: {what}: no connection: {other}")),
    }
}

/// A value read from the store that does not fit its Rust type.
pub(crate) fn bad_data(what: impl std::fmt::Display) -> Error {
    Error::Backend(format!("postgres: unexpected data in the store: {what}"))
}
