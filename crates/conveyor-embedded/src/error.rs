//! A SQLite failure as the crate's error, classified by what it means for
//! the caller (busy, unavailable, bad data, configuration).

use conveyor_core::{BackendError, BackendErrorKind, Error};

/// A store failure as the crate's error.
pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    Error::Backend(BackendError::new(classify(&e), "sqlite").with_source(e))
}

/// What kind of failure a SQLite error is.
pub(crate) fn classify(e: &rusqlite::Error) -> BackendErrorKind {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::DatabaseBusy | C::DatabaseLocked => BackendErrorKind::Busy,
            C::SystemIoFailure | C::DiskFull | C::OutOfMemory | C::CannotOpen => {
                BackendErrorKind::Unavailable
            }
            C::DatabaseCorrupt | C::NotADatabase | C::TypeMismatch => BackendErrorKind::Data,
            C::PermissionDenied | C::ReadOnly | C::AuthorizationForStatementDenied => {
                BackendErrorKind::Config
            }
            _ => BackendErrorKind::Other,
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => BackendErrorKind::Data,
        _ => BackendErrorKind::Other,
    }
}
