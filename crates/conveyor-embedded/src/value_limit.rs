//! How big a task's params or result may be: SQLite holds at most
//! `SQLITE_MAX_LENGTH` bytes (1,000,000,000 in the build conveyor bundles)
//! in one string or blob, and in one row; a task's row holds its params and
//! its result together. A value over it, sent anyway, fails the statement
//! with "string or blob too big"; so the backend refuses it first
//! ([`conveyor_core::ValueLimit`]): each value may take half a row, less
//! [`ROW_ROOM`] for the rest of it.

use conveyor_core::ValueLimit;

/// SQLite's `SQLITE_MAX_LENGTH` as bundled.
pub(crate) const SQLITE_MAX_LENGTH: usize = 1_000_000_000;

/// Bytes of a row kept for what it holds besides its two values: names,
/// keys, the trace context, the history of attempts.
pub(crate) const ROW_ROOM: usize = 64 << 10;

/// The limit of every embedded store.
pub(crate) fn limit() -> ValueLimit {
    ValueLimit::new(
        "embedded",
        (SQLITE_MAX_LENGTH - ROW_ROOM) / 2,
        format!(
            "SQLite's limit of {SQLITE_MAX_LENGTH} bytes for one row, holding a task's params and result, less {ROW_ROOM} for the rest of it"
        ),
    )
}
