//! Submitting a workflow: its declaration, then its entry with the nodes
//! that wait for nothing pending, then their tasks.
//!
//! The entry is what makes the workflow exist (it is what is read, listed
//! and settled): a crash before it leaves at most declaration parts nobody
//! reads; a crash after it leaves nodes pending, whose tasks maintenance's
//! pass creates. So the workflow is there whole, or not at all.

use std::sync::Arc;

use bytes::Bytes;
use conveyor_core::workflow::{stored, Progress, Submitted, WorkflowId, WorkflowSpec};
use conveyor_core::{Error, TaskId};

use super::entry::FlowEntry;
use super::settle::apply;
use crate::backend::{all, NatsBackend};
use crate::ledger::Created;
use crate::names::keys;

impl NatsBackend {
    /// Stores `spec` and enqueues the nodes that wait for nothing.
    pub(crate) async fn submit_flow(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        for node in spec
            .nodes
            .iter()
            .chain(spec.callbacks.iter().map(|c| &c.node))
        {
            self.check_task(&node.task)?;
        }
        let declaration = stored::encode(&spec)?;
        let graph = Arc::new(spec.validate()?);
        let ledger = &self.inner.ledger;
        let flow = ledger.next_flow_id().await?;
        let base = ledger.alloc_ids(graph.len() as u64).await?;
        let chunk = ledger.limits.record().max(1);
        let parts: Vec<&[u8]> = declaration.chunks(chunk).collect();
        let writes: Vec<_> = parts
            .iter()
            .enumerate()
            .map(|(k, part)| async move {
                let key = keys::flow_spec(flow, k as u32);
                ledger.create(&key, Bytes::copy_from_slice(part)).await
            })
            .collect();
        for w in all(writes).await {
            if w? == Created::Exists {
                return Err(Error::backend_other(format!(
                    "nats: workflow {flow}'s declaration exists already"
                )));
            }
        }
        let (progress, step) = Progress::start(&graph);
        let now = self.now();
        let mut entry = FlowEntry::new(&progress.states(), base, parts.len() as u32, now);
        apply(&mut entry, &progress, &step, now);
        let rev = match ledger
            .create(&keys::flow(flow), Bytes::from(entry.encode()))
            .await?
        {
            Created::New(rev) => rev,
            Created::Exists => {
                return Err(Error::backend_other(format!(
                    "nats: workflow {flow} exists already"
                )))
            }
        };
        self.inner.graphs.put(flow, graph.clone());
        let started = step
            .enqueue
            .iter()
            .map(|&n| (graph.nodes()[n].name.clone(), TaskId(entry.task_id(n))))
            .collect();
        self.flush(flow, &graph, entry, rev).await?;
        Ok(Submitted {
            id: WorkflowId(flow),
            started,
        })
    }
}
