//! How big a task's params or result may be: PostgreSQL holds at most 1 GiB
//! in one field, and reads at most 1 GiB in one message of its protocol (a
//! statement's parameters all together: a batch's params travel as one
//! array). A value over it, sent anyway, fails the statement with an error
//! that tells nothing of the task; so the backend refuses it first
//! ([`conveyor_core::ValueLimit`]), keeping [`CALL_ROOM`] for the rest of a
//! call.

use conveyor_core::ValueLimit;

/// PostgreSQL's limit for one field, and for one message of its protocol.
pub(crate) const FIELD: usize = (1 << 30) - 1;

/// Bytes kept for the rest of a call: ids, names, keys, the other columns.
pub(crate) const CALL_ROOM: usize = 64 << 10;

/// The limit of every PostgreSQL server.
pub(crate) fn limit() -> ValueLimit {
    let max = FIELD - CALL_ROOM;
    let source = format!(
        "PostgreSQL's limit of {FIELD} bytes for one field, less {CALL_ROOM} for the rest of a call"
    );
    ValueLimit::new("postgres", max, source).with_call_limit(
        max,
        format!("PostgreSQL's limit of {FIELD} bytes for one message, less {CALL_ROOM} for the rest of it"),
    )
}
