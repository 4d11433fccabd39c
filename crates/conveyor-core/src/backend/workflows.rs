//! The workflows part: a graph of tasks stored with its first tasks and
//! moved forward by its tasks' finishes (`conveyor_core::workflow`).

use async_trait::async_trait;

use crate::workflow::{
    Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowSummary,
};
use crate::Error;

/// Stores workflows and moves them forward.
///
/// What every backend with this part keeps:
/// - [`submit`](Workflows::submit) checks the declaration
///   ([`WorkflowSpec::validate`]), stores the graph and enqueues the nodes
///   that wait for nothing in one atomic step: all of it or nothing;
/// - a node's task reaching a final state (completed, dead, cancelled, by a
///   finish, a lease recovery or a cancel) settles the node in the same
///   atomic step, with the decisions of
///   [`ledger::settle`](crate::workflow::ledger::settle): dependents that
///   became ready are enqueued there, their params composed from their
///   dependencies' results ([`compose_params`](crate::workflow::compose_params)),
///   so a crash between the finish and the enqueue cannot lose a node, and a
///   finish refused as stale (a zombie after a redelivery) settles nothing.
///   A store that changes one key at a time (NATS) settles right after the
///   end instead, before the task's message is acked, and whoever meets
///   the ended task again (its redelivery, lease recovery) settles it: the
///   same guarantee, from the order of the writes;
/// - a node's result is kept with the workflow when it settles, so its
///   dependents read it even if its task's record was pruned;
/// - a node task's unique key is refused: a node is its own task.
#[async_trait]
pub trait Workflows: Send + Sync {
    /// Stores `spec` and enqueues the nodes that wait for nothing (the
    /// callbacks too, when the body is empty).
    async fn submit(&self, spec: WorkflowSpec) -> Result<Submitted, Error>;

    /// The workflow `id` with every node, or `None`.
    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error>;

    /// Cancels every node that has not settled (running nodes' tasks are
    /// cancelled, and stop as a cancelled running task does); callbacks do
    /// not run. Returns how many nodes it cancelled (0 for a workflow that
    /// had ended), or `None` when there is no workflow `id`.
    async fn cancel_workflow(&self, id: WorkflowId) -> Result<Option<u64>, Error>;

    /// Puts the failed part of the ended workflow `id` back to run, with
    /// the decisions of
    /// [`ledger::retry_failed`](crate::workflow::ledger::retry_failed): its
    /// failed, cancelled and skipped nodes wait again (their results are
    /// forgotten), the nodes whose dependencies all succeeded are enqueued
    /// in the same atomic step, and the callbacks wait for the new end. A
    /// cancelled workflow is retried the same way. `None` when there is no
    /// workflow `id`.
    async fn retry_workflow(&self, id: WorkflowId) -> Result<Option<Retried>, Error>;

    /// The workflows `filter` admits, newest first (by id), at most
    /// `filter.limit`; workflows pruned are not listed.
    async fn list_workflows(&self, filter: &WorkflowFilter) -> Result<Vec<WorkflowSummary>, Error>;
}
