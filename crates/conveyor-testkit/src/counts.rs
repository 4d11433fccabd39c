//! How many tasks a store holds in one state, over all its queues.

use conveyor_core::{Backend, TaskState};

/// Tasks of every queue in `state`, as the backend's `stats` count them
/// (panics when `stats` fails).
pub async fn count_in(b: &dyn Backend, state: TaskState) -> u64 {
    b.stats()
        .await
        .expect("stats")
        .iter()
        .map(|q| q.count(state))
        .sum()
}
