//! Tasks waiting for a handler no live worker has: during a rolling deploy,
//! or when a handler was removed from every worker, such tasks wait in their
//! queue (workers hand them back rather than fail them), and this is how
//! `conveyor status` and the dashboard tell.
//!
//! It reads the workers' heartbeats (each names its queues and handlers) and
//! the first tasks waiting in each queue, so it needs the registry and the
//! inspection parts; without either it finds nothing. A worker of a version
//! that did not name its handlers counts as having them all.

use std::collections::BTreeMap;

use super::{Backend, ListParams, WorkerInfo};
use crate::clock::Timestamp;
use crate::task_state::TaskState;
use crate::Error;

/// Waiting tasks of each queue looked at, at most.
pub const UNSERVED_SCAN: usize = 1000;

/// Tasks of one handler in one queue that no live worker can run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unserved {
    /// The queue.
    pub queue: String,
    /// The handler no live worker of the queue has.
    pub handler: String,
    /// How many of its tasks wait there, of the first [`UNSERVED_SCAN`]
    /// waiting tasks of the queue looked at.
    pub waiting: u64,
}

/// The handlers of waiting tasks in `queues` that no worker alive at `now`
/// on that queue runs, with how many of their tasks wait (among the first
/// [`UNSERVED_SCAN`] of each queue). Empty when the backend keeps no worker
/// registry or cannot list tasks, or when no worker is alive (nothing then
/// serves any handler, which `status` shows already).
pub async fn unserved(
    backend: &dyn Backend,
    queues: &[String],
    now: Timestamp,
) -> Result<Vec<Unserved>, Error> {
    let (Ok(registry), Ok(_)) = (backend.registry(), backend.inspection()) else {
        return Ok(Vec::new());
    };
    let workers: Vec<WorkerInfo> = registry
        .workers(now.minus(super::WORKER_SILENCE))
        .await?
        .into_iter()
        .filter(|w| w.is_alive(now))
        .collect();
    if workers.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for queue in queues {
        let serving: Vec<&WorkerInfo> = workers
            .iter()
            .filter(|w| w.queues.iter().any(|q| q == queue))
            .collect();
        if serving.is_empty() || serving.iter().any(|w| w.handlers.is_empty()) {
            continue;
        }
        let mut lacking: BTreeMap<String, u64> = BTreeMap::new();
        for state in [
            TaskState::Available,
            TaskState::Retrying,
            TaskState::Scheduled,
        ] {
            let page = backend
                .list(
                    &ListParams::new(state)
                        .queue(queue.clone())
                        .limit(UNSERVED_SCAN),
                )
                .await?;
            for t in page {
                let served = serving
                    .iter()
                    .any(|w| w.handlers.binary_search(&t.handler).is_ok());
                if !served {
                    *lacking.entry(t.handler).or_default() += 1;
                }
            }
        }
        out.extend(lacking.into_iter().map(|(handler, waiting)| Unserved {
            queue: queue.clone(),
            handler,
            waiting,
        }));
    }
    Ok(out)
}
