//! Workflows on PostgreSQL: the declaration and tally in `workflows`, one
//! row per node in `workflow_nodes`, and the node tasks that ended but are
//! not settled yet in `workflow_settles` (written by the very statement that
//! ended the task: the finish, the cancel, the lease recovery).
//!
//! Every decision is `conveyor_core::workflow::ledger`'s, run over the rows
//! a settle touches (read ahead, [`ReadAhead`](conveyor_core::workflow::ReadAhead)),
//! under the workflow row's lock, in the transaction that takes the ended
//! task's record and enqueues the nodes made ready: a node settles once, and
//! its dependents are enqueued exactly when it does. The finish hot path is
//! one statement, as before: for tasks outside workflows the recording CTE
//! inserts nothing.

mod read;
mod settle;
mod sql;
mod submit;
mod tx;

use conveyor_core::workflow::{
    Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowSummary,
};
use conveyor_core::{async_trait, Error, Workflows};

pub(crate) use sql::WorkflowStatements;
pub(crate) use tx::end as end_tx;

use crate::backend::PostgresBackend;

#[async_trait]
impl Workflows for PostgresBackend {
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
