//! Cancelling a workflow and retrying its failed part: each one
//! compare-and-set on the workflow's entry, deciding with
//! [`ledger`](crate::workflow::ledger), then the tasks it touches.

use super::settle::{apply, contended, flush, graph_of, read_flow, write_flow, Flush};
use super::EntryStore;
use crate::workflow::{ledger, NodeState, Progress, Retried, WorkflowId};
use crate::Error;

/// Cancels every node of workflow `id` that has not settled, then the
/// tasks of those that were running (a task created meanwhile is
/// cancelled by its creator, `settle.rs`).
pub async fn cancel<S: EntryStore + ?Sized>(
    store: &S,
    id: WorkflowId,
) -> Result<Option<u64>, Error> {
    for _ in 0..100 {
        let Some((mut entry, rev)) = read_flow(store, id.0).await? else {
            return Ok(None);
        };
        let Some(graph) = graph_of(store, id.0, &entry).await? else {
            return Ok(None);
        };
        let states = entry.states();
        let mut progress = Progress::from_states(&graph, states.clone())?;
        let (nodes, step) = ledger::cancel_all(&graph, &mut progress)?;
        if nodes.is_empty() {
            return Ok(Some(0));
        }
        entry.cancelled = true;
        entry.pending.clear();
        apply(&mut entry, &progress, &step, store.now());
        if write_flow(store, id.0, &entry, rev).await?.is_none() {
            continue;
        }
        let running: Vec<u64> = nodes
            .iter()
            .filter(|&&n| states[n] == NodeState::Running)
            .filter_map(|&n| entry.task(n))
            .collect();
        for task in running {
            match store.cancel_task(task).await {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(Some(nodes.len() as u64));
    }
    Err(contended(store.kind(), id.0))
}

/// Puts the failed part of the ended workflow `id` back to run, under
/// fresh task ids.
pub async fn retry<S: EntryStore + ?Sized>(
    store: &S,
    id: WorkflowId,
) -> Result<Option<Retried>, Error> {
    let mut base = None;
    for _ in 0..100 {
        let Some((mut entry, rev)) = read_flow(store, id.0).await? else {
            return Ok(None);
        };
        let Some(graph) = graph_of(store, id.0, &entry).await? else {
            return Ok(None);
        };
        let mut progress = Progress::from_states(&graph, entry.states())?;
        let Some((nodes, step)) = ledger::retry_failed(&graph, &mut progress)? else {
            return Ok(Some(Retried::Running));
        };
        if nodes.is_empty() {
            return Ok(Some(Retried::Nodes(0)));
        }
        let first = match base {
            Some(b) => b,
            None => {
                let b = store.alloc_ids(graph.len() as u64).await?;
                *base.insert(b)
            }
        };
        entry.new_run(&nodes, first);
        entry.cancelled = false;
        entry.ended_at = None;
        apply(&mut entry, &progress, &step, store.now());
        let Some(rev) = write_flow(store, id.0, &entry, rev).await? else {
            continue;
        };
        flush(store, id.0, &graph, entry, rev, Flush::Made(&step.enqueue)).await?;
        return Ok(Some(Retried::Nodes(nodes.len() as u64)));
    }
    Err(contended(store.kind(), id.0))
}
