//! Reading rows back into the contract's records, without trusting them.
//!
//! Every column is read with `try_get` and every number is range-checked, so a
//! row written by a newer version, by hand or by a bug (an unknown state code, a
//! negative attempt count, a NULL where none belongs) becomes an
//! [`Error::Backend`] that names the task and the column, never a panic.

use std::time::Duration;

use conveyor_core::attempt::{decode_history, full_history, LatestAttempt};
use conveyor_core::{
    Error, Lease, Reserved, TaskId, TaskRecord, TaskState, Timestamp, TraceContext,
};
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use crate::error::bad_data;

/// Reads column `idx` (named `name` in messages) as `T`.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, name: &str) -> Result<T, Error> {
    row.try_get(idx)
        .map_err(|e| bad_data(format!("column {name}: {e}")))
}

/// A task id as stored (a positive bigint).
pub(crate) fn task_id(raw: i64) -> Result<TaskId, Error> {
    u64::try_from(raw)
        .map(TaskId)
        .map_err(|_| bad_data(format!("task id {raw} is negative")))
}

/// A task id as a query parameter; `None` for ids no stored task can have.
pub(crate) fn param_id(id: TaskId) -> Option<i64> {
    i64::try_from(id.0).ok().filter(|&v| v > 0)
}

/// A stored state code.
pub(crate) fn state(id: TaskId, code: i16) -> Result<TaskState, Error> {
    TaskState::from_code(i64::from(code)).ok_or_else(|| {
        bad_data(format!(
            "task {id} has the unknown state code {code} (written by a newer conveyor?)"
        ))
    })
}

fn count(id: TaskId, what: &str, raw: i32) -> Result<u32, Error> {
    u32::try_from(raw).map_err(|_| bad_data(format!("task {id} has {what} = {raw}")))
}

/// A `TaskRecord` from the columns of `statements::RECORD_COLUMNS`.
pub(crate) fn record(row: &Row) -> Result<TaskRecord, Error> {
    let id = task_id(col(row, 0, "id")?)?;
    let task_state = state(id, col(row, 3, "state")?)?;
    let attempts = count(id, "attempts", col(row, 6, "attempts")?)?;
    let finished_at = col::<Option<i64>>(row, 14, "finished_at")?.map(Timestamp);
    let worker: Option<String> = col(row, 16, "worker")?;
    let stored: Option<String> = col(row, 18, "history")?;
    let history = full_history(
        decode_history(stored.as_deref()),
        LatestAttempt {
            state: task_state,
            attempts,
            worker: worker.as_deref(),
            started_at: col::<Option<i64>>(row, 17, "started_at")?.map(Timestamp),
            finished_at,
        },
    );
    Ok(TaskRecord {
        id,
        queue: col(row, 1, "queue")?,
        handler: col(row, 2, "handler")?,
        state: task_state,
        payload: col(row, 4, "payload")?,
        priority: col(row, 5, "priority")?,
        attempts,
        max_attempts: count(id, "max_attempts", col(row, 7, "max_attempts")?)?,
        run_at: Timestamp(col(row, 8, "run_at")?),
        unique_key: col(row, 9, "unique_key")?,
        ordering_key: col(row, 10, "ordering_key")?,
        result: col(row, 11, "result")?,
        error: col(row, 12, "error")?,
        created_at: Timestamp(col(row, 13, "created_at")?),
        finished_at,
        trace: TraceContext::from_stored(col::<Option<String>>(row, 15, "trace")?.as_deref()),
        keep: col::<Option<i64>>(row, 19, "keep_ms")?
            .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        expires_at: col::<Option<i64>>(row, 20, "expires_at")?.map(Timestamp),
        history,
    })
}

/// A reserved task (the `RETURNING` list of the reserve statement) and its
/// priority, by which reservations of one queue are ordered.
pub(crate) fn reserved(row: &Row) -> Result<(i32, Reserved), Error> {
    let id = task_id(col(row, 0, "id")?)?;
    let token: i64 = col(row, 1, "token")?;
    let token =
        u64::try_from(token).map_err(|_| bad_data(format!("task {id} has token {token}")))?;
    let timeout = match col::<Option<i64>>(row, 7, "timeout_ms")? {
        None => None,
        Some(ms) => {
            Some(Duration::from_millis(u64::try_from(ms).map_err(|_| {
                bad_data(format!("task {id} has timeout_ms = {ms}"))
            })?))
        }
    };
    let lease_until: Option<i64> = col(row, 11, "lease_until")?;
    let lease_until =
        lease_until.ok_or_else(|| bad_data(format!("task {id} is reserved without a lease")))?;
    let reserved = Reserved {
        lease: Lease::new(id, token),
        queue: col(row, 2, "queue")?,
        handler: col(row, 3, "handler")?,
        payload: col(row, 4, "payload")?,
        attempt: count(id, "attempts", col(row, 5, "attempts")?)?,
        max_attempts: count(id, "max_attempts", col(row, 6, "max_attempts")?)?,
        timeout,
        ordering_key: col(row, 8, "ordering_key")?,
        enqueued_at: Timestamp(col(row, 9, "created_at")?),
        due_at: Timestamp(col(row, 10, "run_at")?),
        lease_until: Timestamp(lease_until),
        trace: TraceContext::from_stored(col::<Option<String>>(row, 13, "trace")?.as_deref()),
    };
    Ok((col(row, 12, "priority")?, reserved))
}
