//! Reading rows back into the contract's records, without trusting them,
//! and task ids to and from the file's row ids.
//!
//! A row this crate could not have written (an unknown state code, a
//! negative count, a wrong type) becomes an [`Error::Backend`] naming the
//! task and column, never a panic.

use std::time::Duration;

use conveyor_core::attempt::{decode_history, full_history, LatestAttempt};
use conveyor_core::{
    BackendErrorKind, Error, Lease, Reserved, TaskId, TaskRecord, TaskState, Timestamp,
    TraceContext,
};
use rusqlite::Row;

use crate::error::db_err;

pub(crate) fn id_param(id: TaskId) -> Option<i64> {
    i64::try_from(id.0).ok()
}

pub(crate) fn lease_params(lease: &Lease) -> Option<(i64, i64)> {
    Some((id_param(lease.id)?, i64::try_from(lease.token).ok()?))
}

pub(crate) fn task_id(raw: i64) -> Result<TaskId, Error> {
    u64::try_from(raw)
        .map(TaskId)
        .map_err(|_| Error::backend_other(format!("the file holds a task with negative id {raw}")))
}

pub(crate) fn state_from_code(code: i64, id: i64) -> Result<TaskState, Error> {
    TaskState::from_code(code).ok_or_else(|| {
        Error::backend(
            BackendErrorKind::Data,
            format!(
            "task {id}: unknown state code {code} in the file (written by a newer conveyor, or \
             edited by hand?)"
        ),
        )
    })
}

/// Reads column `idx` of the row of task `id`, naming both on failure.
fn col<T: rusqlite::types::FromSql>(row: &Row<'_>, idx: usize, id: i64) -> Result<T, Error> {
    row.get(idx).map_err(|e| {
        let name = row.as_ref().column_name(idx).unwrap_or("?");
        Error::backend_other(format!("task {id}: column {name}: {e}"))
    })
}

/// A non-negative count column as `u32`.
fn count(row: &Row<'_>, idx: usize, id: i64) -> Result<u32, Error> {
    let raw: i64 = col(row, idx, id)?;
    u32::try_from(raw).map_err(|_| {
        let name = row.as_ref().column_name(idx).unwrap_or("?");
        Error::backend_other(format!("task {id}: column {name}: {raw} is out of range"))
    })
}

/// One row of the pick statement, as the reservation about to be made of it
/// (attempt count and token one higher).
pub(crate) fn reserved_from_row(
    row: &Row<'_>,
    queue: &str,
    lease_until: Timestamp,
) -> Result<Reserved, Error> {
    let id: i64 = row.get(0).map_err(db_err)?;
    let token: i64 = col(row, 1, id)?;
    let token = token
        .checked_add(1)
        .and_then(|t| u64::try_from(t).ok())
        .ok_or_else(|| {
            Error::backend_other(format!("task {id}: lease token {token} out of range"))
        })?;
    let attempt = count(row, 4, id)?
        .checked_add(1)
        .ok_or_else(|| Error::backend_other(format!("task {id}: attempt count out of range")))?;
    let timeout_ms: Option<i64> = col(row, 6, id)?;
    Ok(Reserved {
        lease: Lease::new(task_id(id)?, token),
        queue: queue.to_string(),
        handler: col(row, 2, id)?,
        payload: col(row, 3, id)?,
        attempt,
        max_attempts: count(row, 5, id)?,
        timeout: timeout_ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        ordering_key: col(row, 7, id)?,
        enqueued_at: Timestamp(col(row, 8, id)?),
        due_at: Timestamp(col(row, 9, id)?),
        lease_until,
        trace: TraceContext::from_stored(col::<Option<String>>(row, 10, id)?.as_deref()),
    })
}

/// A row of [`crate::sql::RECORD_COLUMNS`].
pub(crate) fn record_from_row(row: &Row<'_>) -> Result<TaskRecord, Error> {
    let id: i64 = row.get(0).map_err(db_err)?;
    let priority: i64 = col(row, 5, id)?;
    let state = state_from_code(col(row, 3, id)?, id)?;
    let attempts = count(row, 6, id)?;
    let finished_at = col::<Option<i64>>(row, 14, id)?.map(Timestamp);
    let worker: Option<String> = col(row, 16, id)?;
    // A history column that is not text reads as no history.
    let stored = row.get::<_, Option<String>>(18).ok().flatten();
    let history = full_history(
        decode_history(stored.as_deref()),
        LatestAttempt {
            state,
            attempts,
            worker: worker.as_deref(),
            started_at: col::<Option<i64>>(row, 17, id)?.map(Timestamp),
            finished_at,
        },
    );
    Ok(TaskRecord {
        id: task_id(id)?,
        queue: col(row, 1, id)?,
        handler: col(row, 2, id)?,
        state,
        payload: col(row, 4, id)?,
        priority: i32::try_from(priority).map_err(|_| {
            Error::backend_other(format!("task {id}: priority {priority} out of range"))
        })?,
        attempts,
        max_attempts: count(row, 7, id)?,
        run_at: Timestamp(col(row, 8, id)?),
        unique_key: col(row, 9, id)?,
        ordering_key: col(row, 10, id)?,
        result: col(row, 11, id)?,
        error: col(row, 12, id)?,
        created_at: Timestamp(col(row, 13, id)?),
        finished_at,
        trace: TraceContext::from_stored(col::<Option<String>>(row, 15, id)?.as_deref()),
        keep: col::<Option<i64>>(row, 19, id)?
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        expires_at: col::<Option<i64>>(row, 20, id)?.map(Timestamp),
        history,
    })
}
