//! Workflows on NATS (the [`Workflows`] part), in the ledger bucket: a
//! workflow is one entry (`f.<id>`, `entry.rs`) with every node's state,
//! beside its declaration (`fd.<id>.<k>`, split to fit the server's
//! `max_payload`), and each node's task is an ordinary task record that
//! names its node.
//!
//! JetStream changes one key at a time, so a node task's end and its
//! node's settle are two writes, made safe by their order (`settle.rs`):
//! the end is written, then settled, then the task's message is acked. A
//! crash in between leaves the message unacked, and whoever meets the
//! finished record again (the redelivery, lease recovery, maintenance)
//! settles it; a node settles only while it runs under that very task, so
//! once however often its end is heard. The nodes a settle makes ready are
//! written pending with their task ids in the same compare-and-set, and
//! their tasks created after it, so a crash there creates them later, under
//! the same ids, never twice.
//!
//! A node's task is kept as long as its workflow (its dependents read its
//! result from its record), and goes with it when maintenance prunes it.

mod entry;
mod ops;
mod settle;
mod submit;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use settle::Ended;

use conveyor_core::workflow::{
    Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowSummary,
};
use conveyor_core::{async_trait, Error, Workflows};

use crate::NatsBackend;

#[async_trait]
impl Workflows for NatsBackend {
    async fn submit(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        self.guard("submitting a workflow", self.submit_flow(spec))
            .await
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error> {
        self.read_whole(id).await
    }

    async fn cancel_workflow(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        self.guard("cancelling a workflow", self.cancel_flow(id))
            .await
    }

    async fn retry_workflow(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        self.guard("retrying a workflow", self.retry_flow(id)).await
    }

    async fn list_workflows(&self, filter: &WorkflowFilter) -> Result<Vec<WorkflowSummary>, Error> {
        self.list_flows(filter).await
    }
}
