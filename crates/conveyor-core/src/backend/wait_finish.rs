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

/// Reads task `id` until it has finished or `timeout` has passed, and
/// answers the last record read (`None`: no such task, or pruned).
///
/// Where the store can notify, it takes the store's finish mark before each
/// read and then waits on it, so a finish that lands between the read and
/// the wait wakes it at once; each wait is bounded by a second, after which
/// it reads again anyway. Otherwise it sleeps a pause that grows from 2 ms
/// to 100 ms between reads.
pub async fn wait_for_finish(
    store: &dyn ResultStore,
    id: TaskId,
    timeout: Duration,
) -> Result<Option<TaskRecord>, Error> {
    let deadline = Instant::now().checked_add(timeout);
    let mut pause = POLL_FIRST;
    loop {
        let mark = store.finish_mark().await;
        let record = store.get(id).await?;
        let Some(r) = &record else {
            return Ok(None);
        };
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        };
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
