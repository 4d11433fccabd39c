//! Actions over every task matching a filter, done a bounded batch at a
//! time: each batch is one listing and one action, so a million matching
//! tasks never make one giant transaction or one giant answer.

use conveyor_core::{Backend, ListParams, Search};
use conveyor_core::{Error, TaskId, TaskState};

/// Tasks handled per batch.
pub(crate) const BATCH: usize = 1_000;

/// Requeues every dead task of `queue` and `handler` (each when given)
/// whose params or error hold `search` (when given), oldest first. Returns
/// how many moved. A dead task that cannot move (its unique key is held by
/// an unfinished task) stays dead and is passed over.
pub(crate) async fn requeue_dead_matching(
    backend: &dyn Backend,
    queue: Option<&str>,
    handler: Option<&str>,
    search: Option<&Search>,
) -> Result<u64, Error> {
    let mut params = ListParams::new(TaskState::Dead)
        .queue_opt(queue)
        .handler_opt(handler)
        .limit(BATCH);
    let mut moved = 0;
    loop {
        // Each page reads a bounded number of candidates and says where it
        // stopped; requeued tasks leave the dead state behind the cursor.
        let page = backend.page(&params, search).await?;
        let ids: Vec<TaskId> = page.tasks.iter().map(|t| t.id).collect();
        if !ids.is_empty() {
            moved += backend.requeue_dead(&ids).await?;
        }
        match page.next {
            Some(after) => params = params.after(after),
            None => return Ok(moved),
        }
    }
}
