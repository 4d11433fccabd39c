//! Submitting a workflow: its declaration, then its entry with the nodes
//! that wait for nothing pending, then their tasks.
//!
//! The entry is what makes the workflow exist (it is what is read, listed
//! and settled): a crash before it leaves at most declaration parts nobody
//! reads; a crash after it leaves nodes pending, whose tasks maintenance's
//! pass creates. So the workflow is there whole, or not at all.

use std::sync::Arc;

use super::entry::FlowEntry;
use super::settle::{apply, flush, write_parts, Flush};
use super::{keys, EntryStore};
use crate::workflow::{stored, Progress, Submitted, WorkflowId, WorkflowSpec};
use crate::{Error, TaskId};

/// Stores `spec` and enqueues the nodes that wait for nothing.
pub async fn submit<S: EntryStore + ?Sized>(
    store: &S,
    spec: WorkflowSpec,
) -> Result<Submitted, Error> {
    for node in spec
        .nodes
        .iter()
        .chain(spec.callbacks.iter().map(|c| &c.node))
    {
        store.check_task(&node.task)?;
    }
    let declaration = stored::encode(&spec)?;
    let graph = Arc::new(spec.validate()?);
    let kind = store.kind();
    let flow = store.next_flow_id().await?;
    let base = store.alloc_ids(graph.len() as u64).await?;
    let declared = |k| keys::flow_spec(flow, k);
    let Some(parts) = write_parts(store, &declaration, declared, true).await? else {
        return Err(Error::backend_other(format!(
            "{kind}: workflow {flow}'s declaration exists already"
        )));
    };
    let (progress, step) = Progress::start(&graph);
    let now = store.now();
    let mut entry = FlowEntry::new(&progress.states(), base, parts, now);
    apply(&mut entry, &progress, &step, now);
    let Some(rev) = store.create(&keys::flow(flow), entry.encode()).await? else {
        return Err(Error::backend_other(format!(
            "{kind}: workflow {flow} exists already"
        )));
    };
    store.graphs().put(flow, graph.clone());
    let started = step
        .enqueue
        .iter()
        .map(|&n| (graph.nodes()[n].name.clone(), TaskId(entry.task_id(n))))
        .collect();
    flush(store, flow, &graph, entry, rev, Flush::Made(&step.enqueue)).await?;
    Ok(Submitted {
        id: WorkflowId(flow),
        started,
    })
}
