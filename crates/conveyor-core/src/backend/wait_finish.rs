//! Waiting for a task to finish through any [`ResultStore`]: reading the
//! task until it has finished, woken by the store's finish notifications
//! where it has them, polling where it has none. The durable client's
//! `wait` and the HTTP API's wait both use it.

use std::time::Duration;

use tokio::time::Instant;

use super::ResultStore;
use crate::durable_task::TaskRecord;
use crate::{Error, TaskId};

/// The first and the longest pause between two reads of a task on a store
/// that cannot notify: short at first (quick tasks answer quickly), then
/// backing off so a long wait costs the store little.
const POLL_FIRST: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(100);

/// The longest wait on a store's finish notification before reading the task
/// again anyway: a safety net for notifications that cannot arrive (a
/// PostgreSQL pooler in transaction mode swallows `LISTEN`), not the way
/// results are found.
const NOTIFIED_MAX: Duration = Duration::from_secs(1);

/// The first and the longest pause before reading again after the store
/// failed transiently (unreachable, timed out, busy).
const OUTAGE_FIRST: Duration = Duration::from_millis(50);
const OUTAGE_MAX: Duration = Duration::from_secs(1);

/// Reads task `id` until it has finished or `timeout` has passed, and
/// answers the last record read (`None`: no such task, or pruned).
///
/// Where the store can notify, it takes the store's finish mark before each
/// read and then waits on it, so a finish that lands between the read and
/// the wait wakes it at once; each wait is bounded by a second, after which
/// it reads again anyway. Otherwise it sleeps a pause that grows from 2 ms
/// to 100 ms between reads.
///
/// A wait rides out an outage: a read that fails transiently (the store
/// restarting, a dropped connection) is tried again, 50 ms later doubling
/// to a second, until it succeeds or the time is up — then the last error
/// is the answer, not a timeout, so the caller learns why. Any other error
/// ends the wait at once.
pub async fn wait_for_finish(
    store: &dyn ResultStore,
    id: TaskId,
    timeout: Duration,
) -> Result<Option<TaskRecord>, Error> {
    let deadline = Instant::now().checked_add(timeout);
    let left = || match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()),
        None => Duration::MAX,
    };
    let mut pause = POLL_FIRST;
    let mut outage = OUTAGE_FIRST;
    loop {
        let mark = store.finish_mark().await;
        let record = match store.get(id).await {
            Ok(record) => record,
            Err(e) if e.is_transient() && !left().is_zero() => {
                tokio::time::sleep(outage.min(left())).await;
                outage = (outage * 2).min(OUTAGE_MAX);
                continue;
            }
            Err(e) => return Err(e),
        };
        outage = OUTAGE_FIRST;
        let Some(r) = &record else {
            return Ok(None);
        };
        let left = left();
        if r.state.is_finished() || left.is_zero() {
            return Ok(record);
        }
        if let Some(mark) = mark {
            if store.wait_finished(id, mark, NOTIFIED_MAX.min(left)).await {
                continue;
            }
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 3 / 2).min(POLL_MAX);
    }
}

/// [`wait_for_finish`] for a caller that wants the finished task: its record,
/// [`Error::NotFound`] when there is no such task (never enqueued, or
/// pruned), [`Error::WaitTimeout`] when it has not finished within
/// `timeout`.
pub async fn finished_record(
    store: &dyn ResultStore,
    id: TaskId,
    timeout: Duration,
) -> Result<TaskRecord, Error> {
    let record = wait_for_finish(store, id, timeout)
        .await?
        .ok_or(Error::NotFound(id))?;
    if !record.state.is_finished() {
        return Err(Error::WaitTimeout(id));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::clock::Timestamp;
    use crate::error::BackendErrorKind;
    use crate::task_state::TaskState;

    /// A store whose first `failures` reads fail with `kind`, then answer a
    /// completed task.
    struct Flaky {
        failures: u32,
        kind: BackendErrorKind,
        reads: AtomicU32,
    }

    fn completed(id: TaskId) -> TaskRecord {
        TaskRecord {
            id,
            queue: "default".into(),
            handler: "h".into(),
            state: TaskState::Completed,
            payload: Vec::new(),
            priority: 0,
            attempts: 1,
            max_attempts: 1,
            run_at: Timestamp(0),
            unique_key: None,
            ordering_key: None,
            result: Some(b"42".to_vec()),
            error: None,
            created_at: Timestamp(0),
            finished_at: Some(Timestamp(1)),
            trace: None,
            keep: None,
            expires_at: None,
            history: Vec::new(),
        }
    }

    #[crate::async_trait]
    impl ResultStore for Flaky {
        async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
            if self.reads.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err(Error::backend(self.kind, "redis get: broken pipe"));
            }
            Ok(Some(completed(id)))
        }
    }

    fn flaky(failures: u32, kind: BackendErrorKind) -> Flaky {
        Flaky {
            failures,
            kind,
            reads: AtomicU32::new(0),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_rides_out_an_outage() {
        let store = flaky(5, BackendErrorKind::Unavailable);
        let got = wait_for_finish(&store, TaskId(7), Duration::from_secs(60)).await;
        assert_eq!(got.unwrap().unwrap().state, TaskState::Completed);
        assert_eq!(store.reads.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_past_the_timeout_answers_its_error() {
        let store = flaky(u32::MAX, BackendErrorKind::Unavailable);
        let e = wait_for_finish(&store, TaskId(7), Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_end_the_wait_at_once() {
        let store = flaky(1, BackendErrorKind::Data);
        let e = wait_for_finish(&store, TaskId(7), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    }
}
