//! Workflows on NATS (the [`Workflows`] part), in the ledger bucket, kept
//! by `conveyor_core::workflow::entries` (one implementation for every
//! backend whose store changes one key at a time): a workflow is one entry
//! (`f.<id>`) with every node's state, beside its declaration
//! (`fd.<id>.<k>`, split to fit the server's `max_payload`), and each node's
//! task is an ordinary task record that names its node.
//!
//! The end of a node's task is written on its record first (the finish's,
//! cancel's or lease recovery's compare-and-set), then settled, then its
//! message acked; whoever meets the finished record again (the redelivery,
//! lease recovery, maintenance) settles it, once however often its end is
//! heard. A node's task is created under the id its entry decided, so
//! creating it again after a crash creates nothing twice.

#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;

use bytes::Bytes;
use conveyor_core::workflow::entries::{self, EntryStore, NodeTask, TaskOutput};
use conveyor_core::workflow::{
    Graphs, Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowSpec,
    WorkflowSummary,
};
use conveyor_core::{async_trait, Administration, Error, NewTask, TaskId, Timestamp, Workflows};

use crate::backend::{all, NatsBackend};
use crate::ledger::Created;
use crate::names::keys;
use crate::record::{NodeLink, Rec, Spec};

/// The end of a node's task `rec` records, once it is final.
pub(crate) fn ended(rec: &Rec) -> Option<entries::Ended> {
    let link = rec.node?;
    entries::Ended::of(
        entries::NodeLink {
            flow: link.flow,
            node: link.node,
        },
        rec.id,
        rec.state(),
        rec.result.as_deref(),
    )
}

#[async_trait]
impl Workflows for NatsBackend {
    async fn submit(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        self.guard("submitting a workflow", entries::submit(self, spec))
            .await
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error> {
        entries::read(self, id).await
    }

    async fn cancel_workflow(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        self.guard("cancelling a workflow", entries::cancel(self, id))
            .await
    }

    async fn retry_workflow(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        self.guard("retrying a workflow", entries::retry(self, id))
            .await
    }

    async fn list_workflows(&self, filter: &WorkflowFilter) -> Result<Vec<WorkflowSummary>, Error> {
        entries::list(self, filter).await
    }
}

/// The ledger as the store of workflow entries; a node's task is a record
/// created as an enqueue creates one.
#[async_trait]
impl EntryStore for NatsBackend {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn graphs(&self) -> &Graphs {
        &self.inner.graphs
    }

    fn entry_limit(&self) -> usize {
        self.inner.ledger.limits.record()
    }

    async fn entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error> {
        let got = self.inner.ledger.entry(key).await?;
        Ok(got.map(|(bytes, rev)| (bytes.to_vec(), rev)))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>, Error> {
        Ok(
            match self.inner.ledger.create(key, Bytes::from(value)).await? {
                Created::New(rev) => Some(rev),
                Created::Exists => None,
            },
        )
    }

    async fn cas(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<Option<u64>, Error> {
        self.inner.ledger.cas(key, Bytes::from(value), rev).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.inner
            .ledger
            .put(key, Bytes::from(value))
            .await
            .map(drop)
    }

    async fn remove(&self, key: &str) -> Result<(), Error> {
        self.inner.ledger.remove(key).await
    }

    async fn scan_flows(&self) -> Result<Vec<(String, Vec<u8>, u64)>, Error> {
        let entries = self.inner.ledger.scan(keys::FLOWS).await?;
        Ok(entries
            .into_iter()
            .map(|(key, bytes, rev)| (key, bytes.to_vec(), rev))
            .collect())
    }

    async fn next_flow_id(&self) -> Result<u64, Error> {
        self.inner.ledger.next_flow_id().await
    }

    async fn alloc_ids(&self, n: u64) -> Result<u64, Error> {
        self.inner.ledger.alloc_ids(n).await
    }

    fn check_task(&self, task: &NewTask) -> Result<(), Error> {
        NatsBackend::check_task(self, task)
    }

    fn check_node_task(&self, task: &NodeTask) -> Result<(), Error> {
        let rec = node_rec(task, self.now());
        let len = rec.encode().len();
        self.inner.ledger.limits.check(&rec, len)
    }

    async fn create_tasks(&self, tasks: Vec<NodeTask>) -> Result<(), Error> {
        let now = self.now();
        let recs = tasks.iter().map(|t| node_rec(t, now)).collect();
        self.create_recs(recs, now).await.map(drop)
    }

    async fn outputs(&self, ids: &[u64]) -> Result<HashMap<u64, TaskOutput>, Error> {
        let ledger = &self.inner.ledger;
        let reads: Vec<_> = ids.iter().map(|&id| ledger.get(id)).collect();
        let mut out = HashMap::with_capacity(ids.len());
        for (id, got) in ids.iter().zip(all(reads).await) {
            if let Some((rec, _)) = got? {
                out.insert(*id, (rec.result, rec.error));
            }
        }
        Ok(out)
    }

    async fn cancel_task(&self, id: u64) -> Result<(), Error> {
        Administration::cancel(self, TaskId(id)).await.map(drop)
    }

    async fn remove_tasks(&self, ids: &[u64]) -> Result<(), Error> {
        let ledger = &self.inner.ledger;
        let removals: Vec<_> = ids.iter().map(|&t| ledger.remove_rec(t)).collect();
        for r in all(removals).await {
            r?;
        }
        Ok(())
    }
}

/// The record of a node's task, as created.
fn node_rec(task: &NodeTask, now: Timestamp) -> Rec {
    let mut rec = Rec::new(task.id, &Spec::of(&task.task, now), now);
    rec.node = Some(NodeLink {
        flow: task.link.flow,
        node: task.link.node,
    });
    rec
}
