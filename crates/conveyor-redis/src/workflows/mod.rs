//! Workflows on Redis (the [`Workflows`] part): a workflow is one hash of
//! its namespace holding its declaration, one row per node, a tally and a
//! version (see `lua/common/workflows.lua` for the fields).
//!
//! The decisions are `conveyor_core`'s ledger, run here over rows read at
//! one version of the workflow ([`ReadAhead`](conveyor_core::workflow::ReadAhead));
//! `wf_apply` writes what a decision changed, and enqueues the nodes it
//! made ready, only if the workflow is still at that version, else the
//! settler reads again and decides again. So two processes settling nodes
//! of one workflow (two headers of a chord finishing at once) never both
//! write, and neither loses the other's settle.
//!
//! A node's task reaching a final state is recorded in the same script
//! that ends it (finish, cancel, lease recovery), in the namespace's set of
//! ended node tasks; whoever ended it settles it right after, and
//! maintenance (`recover_expired`) settles any a crash left. A node settles
//! only while running, so exactly once however often its end is heard.

mod codec;
mod list;
mod read;
mod retry;
mod settle;
mod submit;
mod view;

use conveyor_core::workflow::{
    Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowSummary,
};
use conveyor_core::{async_trait, Error, Workflows};

use crate::RedisBackend;

#[async_trait]
impl Workflows for RedisBackend {
    async fn submit(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        self.submit_workflow(spec).await
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error> {
        self.read_workflow(id).await
    }

    async fn cancel_workflow(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        self.cancel_whole(id).await
    }

    async fn retry_workflow(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        self.retry_whole(id).await
    }

    async fn list_workflows(&self, filter: &WorkflowFilter) -> Result<Vec<WorkflowSummary>, Error> {
        self.list_workflows(filter).await
    }
}
