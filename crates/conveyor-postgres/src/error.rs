//! Turning driver and pool failures into the contract's [`Error::Backend`]:
//! classified (so a worker retries an outage and not a lasting fault), with
//! the driver's error kept as the source — PostgreSQL's message, detail and
//! hint stay reachable through it, and `Error::chain` prints them on one line.

use conveyor_core::{BackendError, BackendErrorKind, Error};
use tokio_postgres::error::SqlState;

/// A driver error while doing `what`.
pub(crate) fn db(what: &str, e: tokio_postgres::Error) -> Error {
    if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
        crate::read_only::refused();
    }
    let kind = classify(&e);
    Error::Backend(BackendError::new(kind, format!("postgres: {what}")).with_source(e))
}

/// What kind of failure a driver error is.
pub(crate) fn classify(e: &tokio_postgres::Error) -> BackendErrorKind {
    if e.is_closed() {
        return BackendErrorKind::Unavailable;
    }
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection or the client failed (I/O, TLS,
        // protocol), not the statement.
        return BackendErrorKind::Unavailable;
    };
    let class = &code.code()[..2.min(code.code().len())];
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
    {
        BackendErrorKind::Busy
    } else if *code == SqlState::QUERY_CANCELED {
        BackendErrorKind::Timeout
    } else if class == "08" // connection exception
        || class == "57" // operator intervention: shutdown, crash, cannot connect now
        || class == "53" // insufficient resources: too many connections, disk full
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        BackendErrorKind::Unavailable
    } else if class == "28" // invalid authorization
        || class == "42" // undefined table or schema, insufficient privilege
        || class == "3D"
        || class == "3F"
    {
        BackendErrorKind::Config
    } else if class == "22" || class == "23" {
        // Data exception, integrity constraint violation.
        BackendErrorKind::Data
    } else {
        BackendErrorKind::Other
    }
}

/// A pool failure (no connection could be had) while doing `what`.
pub(crate) fn pool(what: &str, e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(what, e),
        deadpool_postgres::PoolError::Timeout(_) => Error::Backend(
            BackendError::new(
                BackendErrorKind::Timeout,
                format!("postgres: {what}: no connection"),
            )
            .with_source(e),
        ),
        other => Error::Backend(
            BackendError::new(
                BackendErrorKind::Unavailable,
                format!("postgres: {what}: no connection"),
            )
            .with_source(other),
        ),
    }
}

/// A value read from the store that does not fit its Rust type.
pub(crate) fn bad_data(what: impl std::fmt::Display) -> Error {
    Error::backend(
        BackendErrorKind::Data,
        format!("postgres: unexpected data in the store: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_data_is_not_transient() {
        let e = bad_data("a negative attempt count");
        assert_eq!(e.backend_kind(), Some(BackendErrorKind::Data));
        assert!(!e.is_transient());
    }
}
