//! A workflow's progress: each node's state, and what settling one node
//! decides ([`Progress::settle`]).

use super::graph::Graph;
use super::ledger::{self, first_rows, Ledger, NodeRow, Tally};
use crate::Error;

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Some dependency has not settled yet: its task is not enqueued.
    Waiting,
    /// Its task is enqueued (waiting, running or retrying) and has not
    /// settled.
    Running,
    /// Its task completed.
    Succeeded,
    /// Its task is dead (failed for good).
    Failed,
    /// Its task was cancelled.
    Cancelled,
    /// It never ran: a dependency it waited for under `fail` failed, or it
    /// is a callback for an end that did not come.
    Skipped,
}

impl NodeState {
    /// Whether the node has settled for good.
    pub fn is_final(self) -> bool {
        !matches!(self, NodeState::Waiting | NodeState::Running)
    }

    /// Whether the node settled without succeeding.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            NodeState::Failed | NodeState::Cancelled | NodeState::Skipped
        )
    }

    /// The state's name: `waiting`, `running`, `succeeded`, `failed`,
    /// `cancelled`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Waiting => "waiting",
            NodeState::Running => "running",
            NodeState::Succeeded => "succeeded",
            NodeState::Failed => "failed",
            NodeState::Cancelled => "cancelled",
            NodeState::Skipped => "skipped",
        }
    }

    /// The state as a store's column holds it (0 waiting, 1 running, 2
    /// succeeded, 3 failed, 4 cancelled, 5 skipped): every store writes
    /// the same codes.
    pub fn code(self) -> i16 {
        match self {
            NodeState::Waiting => 0,
            NodeState::Running => 1,
            NodeState::Succeeded => 2,
            NodeState::Failed => 3,
            NodeState::Cancelled => 4,
            NodeState::Skipped => 5,
        }
    }

    /// The state a column's `code` stands for, or an error naming workflow
    /// `workflow` for a code no version wrote.
    pub fn from_code(code: i64, workflow: impl std::fmt::Display) -> Result<NodeState, Error> {
        Ok(match code {
            0 => NodeState::Waiting,
            1 => NodeState::Running,
            2 => NodeState::Succeeded,
            3 => NodeState::Failed,
            4 => NodeState::Cancelled,
            5 => NodeState::Skipped,
            other => {
                return Err(Error::backend_other(format!(
                    "workflow {workflow} has a node with unknown state code {other}"
                )))
            }
        })
    }
}

/// How a node's task settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeResult {
    /// It completed.
    Succeeded,
    /// It is dead.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl NodeResult {
    /// How a node settles whose task is in `state`: `None` while the task
    /// has not reached a final state (its end, when it comes, settles it).
    pub fn of(state: crate::TaskState) -> Option<NodeResult> {
        match state {
            crate::TaskState::Completed => Some(NodeResult::Succeeded),
            crate::TaskState::Dead => Some(NodeResult::Failed),
            crate::TaskState::Cancelled => Some(NodeResult::Cancelled),
            _ => None,
        }
    }
}

/// How a workflow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowOutcome {
    /// Every node succeeded, or failed where a dependent took the failure in
    /// (under `ignore`).
    Succeeded,
    /// Some node failed, was cancelled or was skipped.
    Failed,
}

impl WorkflowOutcome {
    /// The outcome as a store's column holds it: 0 succeeded, 1 failed.
    pub fn code(self) -> i16 {
        match self {
            WorkflowOutcome::Succeeded => 0,
            WorkflowOutcome::Failed => 1,
        }
    }

    /// The outcome a column holds (`None`: not ended); any code but 0 is a
    /// failure.
    pub fn from_code(code: Option<i64>) -> Option<WorkflowOutcome> {
        code.map(|o| {
            if o == 0 {
                WorkflowOutcome::Succeeded
            } else {
                WorkflowOutcome::Failed
            }
        })
    }
}

/// What one decision asks the store to do, in the same atomic step as the
/// finish that led to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Nodes now running: enqueue their tasks.
    pub enqueue: Vec<usize>,
    /// Nodes now skipped (they will never run).
    pub skipped: Vec<usize>,
    /// Set in the step in which the body (every node but the callbacks)
    /// ended, with how it ended; the callbacks that fire are in `enqueue`.
    pub body_ended: Option<WorkflowOutcome>,
    /// Set in the step in which the last node settled: the workflow is over.
    pub ended: Option<WorkflowOutcome>,
}

impl Step {
    /// Adds the decisions of `later`, a step taken after this one in the
    /// same atomic step (several ends settled at once).
    pub fn merge(&mut self, later: Step) {
        self.enqueue.extend(later.enqueue);
        self.skipped.extend(later.skipped);
        self.body_ended = self.body_ended.or(later.body_ended);
        self.ended = later.ended.or(self.ended);
    }
}

/// Every node's state, and the decisions that move them, held in memory: a
/// [`Ledger`] over a vector of rows (a store keeps the same rows in its own
/// tables and decides with [`ledger::settle`](super::ledger::settle)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    rows: Vec<NodeRow>,
    tally: Tally,
}

impl Ledger for Progress {
    fn row(&mut self, node: usize) -> Result<NodeRow, Error> {
        self.rows.get(node).copied().ok_or_else(|| no_node(node))
    }

    fn set_row(&mut self, node: usize, row: NodeRow) -> Result<(), Error> {
        let slot = self.rows.get_mut(node).ok_or_else(|| no_node(node))?;
        *slot = row;
        Ok(())
    }

    fn add_row(&mut self, node: usize, row: NodeRow) -> Result<(), Error> {
        if node != self.rows.len() {
            return Err(Error::InvalidConfig(format!(
                "a workflow of {} nodes cannot add node {node}",
                self.rows.len()
            )));
        }
        self.rows.push(row);
        Ok(())
    }

    fn tally(&mut self) -> Result<Tally, Error> {
        Ok(self.tally)
    }

    fn set_tally(&mut self, tally: Tally) -> Result<(), Error> {
        self.tally = tally;
        Ok(())
    }
}

fn no_node(node: usize) -> Error {
    Error::InvalidConfig(format!("the workflow has no node {node}"))
}

impl Progress {
    /// A workflow's start: the nodes that wait for nothing run (with the
    /// callbacks, at once, when the body is empty: an empty group ends
    /// at once).
    pub fn start(graph: &Graph) -> (Progress, Step) {
        let (rows, tally) = first_rows(graph);
        let mut progress = Progress { rows, tally };
        let step = ledger::start(graph, &mut progress).unwrap_or_default();
        (progress, step)
    }

    /// The progress of `graph` from its nodes' stored states (in the graph's
    /// order). Refuses states that do not fit the graph.
    pub fn from_states(graph: &Graph, states: Vec<NodeState>) -> Result<Progress, Error> {
        if states.len() != graph.len() {
            return Err(Error::InvalidConfig(format!(
                "a workflow of {} nodes cannot have {} node states",
                graph.len(),
                states.len()
            )));
        }
        let rows: Vec<NodeRow> = (0..graph.len())
            .map(|node| NodeRow {
                state: states[node],
                waiting_on: graph
                    .waits_for(node)
                    .iter()
                    .filter(|&&(dep, _)| !states[dep].is_final())
                    .count() as u32,
            })
            .collect();
        let body_left = graph
            .body_nodes()
            .filter(|&n| !states[n].is_final())
            .count() as u32;
        let failed = graph
            .body_nodes()
            .any(|node| states[node].is_failure() && ledger::counts_against(graph, node));
        let outcome = (body_left == 0).then_some(if failed {
            WorkflowOutcome::Failed
        } else {
            WorkflowOutcome::Succeeded
        });
        let tally = Tally {
            body_left,
            left: states.iter().filter(|s| !s.is_final()).count() as u32,
            failed,
            outcome,
        };
        Ok(Progress { rows, tally })
    }

    /// Every node's row, in the graph's order (what a store writes when it
    /// stores a workflow it started in memory).
    pub fn rows(&self) -> &[NodeRow] {
        &self.rows
    }

    /// The workflow's tally.
    pub fn counts(&self) -> Tally {
        self.tally
    }

    /// Node `node`'s state, if the graph has that node.
    pub fn state(&self, node: usize) -> Option<NodeState> {
        self.rows.get(node).map(|r| r.state)
    }

    /// Every node's state, in the graph's order.
    pub fn states(&self) -> Vec<NodeState> {
        self.rows.iter().map(|r| r.state).collect()
    }

    /// How the body ended, once it has.
    pub fn outcome(&self) -> Option<WorkflowOutcome> {
        self.tally.outcome
    }

    /// Whether every node has settled.
    pub fn is_over(&self) -> bool {
        self.tally.left == 0
    }

    /// Node `node`, running, expanded into `added` (see
    /// [`ledger::expand`](super::ledger::expand)).
    pub fn expand(&mut self, graph: &Graph, node: usize, added: std::ops::Range<usize>) -> Step {
        ledger::expand(graph, self, node, added).unwrap_or_default()
    }

    /// Node `node`'s task settled as `result`. Only a running node settles:
    /// for any other (a finish heard twice, a node already skipped) nothing
    /// changes and the step is empty, so a repeated finish can never fire a
    /// dependent twice.
    pub fn settle(&mut self, graph: &Graph, node: usize, result: NodeResult) -> Step {
        ledger::settle(graph, self, node, result).unwrap_or_default()
    }
}
