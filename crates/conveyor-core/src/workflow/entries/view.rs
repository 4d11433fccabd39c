//! Reading workflows (one, or a page of them), and maintenance's pass over
//! them: pruning the ended ones past their retention, with their tasks,
//! and creating the tasks a crash left pending.

use super::entry::FlowEntry;
use super::settle::{flush, graph_of, read_flow, Flush};
use super::{all, keys, EntryStore};
use crate::workflow::{
    NodeRecord, WorkflowFilter, WorkflowId, WorkflowOutcome, WorkflowRecord, WorkflowSummary,
};
use crate::{Error, Retention, TaskId, Timestamp};

/// Workflow `id` with every node.
pub async fn read<S: EntryStore + ?Sized>(
    store: &S,
    id: WorkflowId,
) -> Result<Option<WorkflowRecord>, Error> {
    let Some((entry, _)) = read_flow(store, id.0).await? else {
        return Ok(None);
    };
    let Some(graph) = graph_of(store, id.0, &entry).await? else {
        return Ok(None);
    };
    let states = entry.states();
    // A pending node's task may not exist yet: shown without one until
    // it does, so nobody waits on a task that is not there.
    let task = |n: usize| {
        let pending = entry.pending.contains(&(n as u32));
        entry.task(n).filter(|_| !pending).map(TaskId)
    };
    let nodes = (0..graph.len().min(states.len()))
        .map(|n| NodeRecord::of(&graph, n, states[n], task(n)))
        .collect();
    Ok(Some(WorkflowRecord {
        id,
        state: entry.workflow_state(),
        nodes,
        created_at: Timestamp(entry.created_at),
        ended_at: entry.ended(),
    }))
}

/// The workflows `filter` admits, newest first: a scan of every
/// workflow's entry.
pub async fn list<S: EntryStore + ?Sized>(
    store: &S,
    filter: &WorkflowFilter,
) -> Result<Vec<WorkflowSummary>, Error> {
    let mut all = scan_flows(store).await?;
    all.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    Ok(all
        .into_iter()
        .map(|(id, entry, _)| summary(id, &entry))
        .filter(|s| filter.admits(s))
        .take(filter.limit)
        .collect())
}

/// Every workflow's entry: its id, the entry and its revision. An
/// entry that does not read is skipped (and logged), never a reason
/// for the rest to go unlisted.
async fn scan_flows<S: EntryStore + ?Sized>(
    store: &S,
) -> Result<Vec<(u64, FlowEntry, u64)>, Error> {
    let entries = store.scan_flows().await?;
    let mut out = Vec::with_capacity(entries.len());
    for (key, bytes, rev) in entries {
        let Some(id) = keys::flow_of(&key) else {
            continue;
        };
        match FlowEntry::decode(store.kind(), &bytes) {
            Ok(entry) => out.push((id, entry, rev)),
            Err(e) => {
                tracing::warn!(workflow = id, error = %e, "a workflow entry does not read")
            }
        }
    }
    Ok(out)
}

/// Maintenance's pass: drops the workflows that ended before their
/// retention (a succeeded one after the finished tasks', a failed or
/// cancelled one after the dead tasks'), their tasks first and their
/// entry last, so a pass cut short is done again by the next; creates
/// the tasks a crash left pending in the others. How many it dropped.
pub async fn prune<S: EntryStore + ?Sized>(store: &S, retention: Retention) -> Result<u64, Error> {
    let now = store.now();
    let finished_before = now.minus(retention.finished).as_millis();
    let dead_before = now.minus(retention.dead).as_millis();
    let mut dropped = 0;
    let mut pending = Vec::new();
    for (id, entry, rev) in scan_flows(store).await? {
        if let Some(ended) = entry.ended_at {
            let succeeded = !entry.cancelled && entry.outcome() == Some(WorkflowOutcome::Succeeded);
            let before = if succeeded {
                finished_before
            } else {
                dead_before
            };
            if ended < before {
                drop_flow(store, id, &entry).await?;
                dropped += 1;
            }
            continue;
        }
        if !entry.pending.is_empty() {
            pending.push((id, entry, rev));
        }
    }
    let stale: Vec<(u64, u64)> = pending.iter().map(|(id, _, rev)| (*id, *rev)).collect();
    let left = match store.pending_watch() {
        Some(watch) => watch.pass(&stale),
        None => stale.iter().map(|(id, _)| *id).collect(),
    };
    for (id, entry, rev) in pending {
        if !left.contains(&id) {
            continue;
        }
        if let Some(graph) = graph_of(store, id, &entry).await? {
            flush(store, id, &graph, entry, rev, Flush::All).await?;
        }
    }
    Ok(dropped)
}

/// Removes workflow `id`: every task its runs could have, its
/// declaration, then its entry.
async fn drop_flow<S: EntryStore + ?Sized>(
    store: &S,
    id: u64,
    entry: &FlowEntry,
) -> Result<(), Error> {
    let tasks = entry.every_task_id();
    for chunk in tasks.chunks(256) {
        store.remove_tasks(chunk).await?;
    }
    let parts: Vec<_> = (0..entry.parts)
        .map(|k| async move { store.remove(&keys::flow_spec(id, k)).await })
        .collect();
    for r in all(parts).await {
        r?;
    }
    let grown: Vec<_> = entry
        .grown
        .iter()
        .flat_map(|g| (0..g.parts).map(move |k| keys::flow_growth(id, g.node, k)))
        .map(|key| async move { store.remove(&key).await })
        .collect();
    for r in all(grown).await {
        r?;
    }
    store.remove(&keys::flow(id)).await?;
    store.graphs().forget(id);
    Ok(())
}

/// Workflow `id`'s summary.
fn summary(id: u64, entry: &FlowEntry) -> WorkflowSummary {
    WorkflowSummary {
        id: WorkflowId(id),
        state: entry.workflow_state(),
        nodes: entry.len() as u32,
        left: entry.left(),
        created_at: Timestamp(entry.created_at),
        ended_at: entry.ended(),
    }
}
