//! A stored workflow as callers read it: its id, where it stands, and each
//! node with its task.

use super::graph::{ExpansionOutput, Graph, WhenEnded};
use super::progress::{NodeState, WorkflowOutcome};
use crate::clock::Timestamp;
use crate::task::TaskId;

/// A workflow's identity within a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkflowId(pub u64);

impl std::fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a workflow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowState {
    /// Some node has not settled.
    Running,
    /// Every node settled, and the body succeeded (see
    /// [`WorkflowOutcome`](super::WorkflowOutcome)).
    Succeeded,
    /// Every node settled, and the body failed.
    Failed,
    /// It was cancelled: no node runs after.
    Cancelled,
}

impl WorkflowState {
    /// The state of a workflow that was `cancelled` or not, with `left`
    /// nodes not settled and its body's `outcome` once ended.
    pub fn of(cancelled: bool, left: u32, outcome: Option<WorkflowOutcome>) -> WorkflowState {
        if cancelled {
            WorkflowState::Cancelled
        } else if left > 0 {
            WorkflowState::Running
        } else if outcome == Some(WorkflowOutcome::Succeeded) {
            WorkflowState::Succeeded
        } else {
            WorkflowState::Failed
        }
    }

    /// The state named `name` (as [`as_str`](Self::as_str) names it).
    pub fn parse(name: &str) -> Option<WorkflowState> {
        [
            WorkflowState::Running,
            WorkflowState::Succeeded,
            WorkflowState::Failed,
            WorkflowState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// The state's name: `running`, `succeeded`, `failed`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Succeeded => "succeeded",
            WorkflowState::Failed => "failed",
            WorkflowState::Cancelled => "cancelled",
        }
    }
}

/// One node of a stored workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its name, unique within the workflow.
    pub name: String,
    /// Where it stands.
    pub state: NodeState,
    /// Its task, once enqueued.
    pub task: Option<TaskId>,
    /// The names of the nodes it waits for.
    pub after: Vec<String>,
    /// For a callback, when it runs.
    pub callback: Option<WhenEnded>,
    /// When its task's result added nodes to the workflow (named
    /// `<name>/…`): what it passes on, and the names of the added nodes it
    /// takes that from (it settles when they have).
    pub expanded: Option<(ExpansionOutput, Vec<String>)>,
}

impl NodeRecord {
    /// Its expansion as every face shows it: `{"output": "one"|"list",
    /// "last": [names]}`, or `null` when it did not expand.
    pub fn expansion_json(&self) -> serde_json::Value {
        match &self.expanded {
            Some((output, last)) => serde_json::json!({"output": output.as_str(), "last": last}),
            None => serde_json::Value::Null,
        }
    }

    /// Node `node` of `graph`, in `state`, with its `task` if enqueued.
    pub fn of(graph: &Graph, node: usize, state: NodeState, task: Option<TaskId>) -> NodeRecord {
        let nodes = graph.nodes();
        NodeRecord {
            name: nodes[node].name.clone(),
            state,
            task,
            after: graph
                .dependencies(node)
                .iter()
                .map(|&(d, _)| nodes[d].name.clone())
                .collect(),
            callback: graph.when(node),
            expanded: graph.expansion_output(node).map(|(output, last)| {
                (
                    output,
                    last.iter().map(|&n| nodes[n].name.clone()).collect(),
                )
            }),
        }
    }
}

/// A stored workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRecord {
    /// Its id.
    pub id: WorkflowId,
    /// Where it stands.
    pub state: WorkflowState,
    /// Every node: the body's then the callbacks', in the declared order,
    /// then those expansions added, in the order they were added.
    pub nodes: Vec<NodeRecord>,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When its last node settled (or it was cancelled).
    pub ended_at: Option<Timestamp>,
}

impl WorkflowRecord {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// One workflow in a listing: where it stands, without its nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSummary {
    /// Its id.
    pub id: WorkflowId,
    /// Where it stands.
    pub state: WorkflowState,
    /// How many nodes it has, callbacks included.
    pub nodes: u32,
    /// How many of them have not settled.
    pub left: u32,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When its last node settled (or it was cancelled).
    pub ended_at: Option<Timestamp>,
}

/// Which workflows a listing returns: newest first, `limit` of them, those
/// in `state` (any when `None`), from before workflow `before` (a page's
/// last id, for the next page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowFilter {
    /// Only workflows in this state.
    pub state: Option<WorkflowState>,
    /// At most this many.
    pub limit: usize,
    /// Only workflows older (submitted before) than this one.
    pub before: Option<WorkflowId>,
}

impl WorkflowFilter {
    /// The newest `limit` workflows, in any state.
    pub fn newest(limit: usize) -> WorkflowFilter {
        WorkflowFilter {
            state: None,
            limit,
            before: None,
        }
    }

    /// Whether `summary` passes the filter's state and cursor.
    pub fn admits(&self, summary: &WorkflowSummary) -> bool {
        self.state.is_none_or(|s| s == summary.state) && self.before.is_none_or(|b| summary.id < b)
    }
}

/// What retrying a workflow's failed part did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// The workflow has not ended: nothing changed.
    Running,
    /// This many nodes were put back to run (none when nothing had failed).
    Nodes(u64),
}

impl Retried {
    /// Why workflow `id` was not retried, when it was [`Retried::Running`]
    /// (one sentence for every face: the CLI, HTTP, Python).
    pub fn running_refusal(id: WorkflowId) -> String {
        format!("workflow {id} is still running; only an ended workflow is retried")
    }
}

/// A submitted workflow: its id and the tasks enqueued with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The workflow's id.
    pub id: WorkflowId,
    /// The nodes that started at once, with their tasks.
    pub started: Vec<(String, TaskId)>,
}
