//! Workflows: tasks joined by dependencies, declared at once as data.
//!
//! A workflow is a graph stored with its first tasks: named **nodes**, each a
//! task to enqueue, and **edges** from a node to the nodes it waits for, each
//! with an [`EdgePolicy`] saying what the node does when that dependency
//! fails. A chain is a graph with one path, a group one with no edges, a
//! chord a group plus one node that depends on all of it ([`WorkflowSpec`]'s
//! builders). **Callbacks** run once the rest has ended: on success, on
//! failure, or either way. A node may receive its dependencies' results as
//! its first argument ([`NodeInput`], [`compose_params`]).
//!
//! This module is the graph and its progress as plain data, with no store:
//! [`WorkflowSpec::validate`] checks a declaration (names, dependencies that
//! exist, no cycle, a bound on size) and indexes it as a [`Graph`], and
//! [`Progress`] decides, each time a node's task settles, which nodes become
//! ready, which are skipped and whether the workflow has ended. A backend
//! applies those decisions in the same atomic step as the fenced finish of the
//! settling task, so a redelivered or late finish cannot fire a node twice:
//! settling a node that is not running changes nothing.

pub mod declared;
pub mod entries;
mod expansion;
mod graph;
mod graphs;
mod input;
pub mod ledger;
mod progress;
mod read_ahead;
mod record;
pub mod stored;
mod stuck;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_expansion;

pub use expansion::{expand, expansion_of, is_expansion, NodeEnd};
pub use graph::{
    Callback, Dependency, EdgePolicy, Expansion, ExpansionOutput, Graph, NodeSpec, WhenEnded,
    WorkflowSpec, MAX_NODES,
};
pub use graphs::Graphs;
pub use input::{compose_params, composed_task, DependencyResult, NodeInput, NodeOutput};
pub use progress::{NodeResult, NodeState, Progress, Step, WorkflowOutcome};
pub use read_ahead::ReadAhead;
pub use record::{
    NodeRecord, Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowState,
    WorkflowSummary,
};
pub use stuck::{stuck_nodes, StuckNode, StuckReason, TaskSeen};
