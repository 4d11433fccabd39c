//! A workflow's progress: each node's state, and what settling one node
//! decides ([`Progress::settle`]).

use super::graph::{EdgePolicy, Graph, WhenEnded};
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

/// How a workflow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowOutcome {
    /// Every node succeeded, or failed where a dependent took the failure in
    /// (under `ignore`).
    Succeeded,
    /// Some node failed, was cancelled or was skipped.
    Failed,
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

/// Every node's state, and the decisions that move them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    states: Vec<NodeState>,
    /// How the body ended, once it has.
    outcome: Option<WorkflowOutcome>,
}

impl Progress {
    /// A workflow's start: the nodes that wait for nothing run (with the
    /// callbacks, at once, when the body is empty: an empty group ends
    /// at once).
    pub fn start(graph: &Graph) -> (Progress, Step) {
        let mut progress = Progress {
            states: vec![NodeState::Waiting; graph.len()],
            outcome: None,
        };
        let mut step = Step::default();
        for node in 0..graph.body() {
            if graph.dependencies(node).is_empty() {
                progress.states[node] = NodeState::Running;
                step.enqueue.push(node);
            }
        }
        progress.after_settling(graph, &mut step);
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
        let body_over = states[..graph.body()].iter().all(|s| s.is_final());
        let outcome = body_over.then(|| body_outcome(graph, &states));
        Ok(Progress { states, outcome })
    }

    /// Every node's state, in the graph's order.
    pub fn states(&self) -> &[NodeState] {
        &self.states
    }

    /// How the body ended, once it has.
    pub fn outcome(&self) -> Option<WorkflowOutcome> {
        self.outcome
    }

    /// Whether every node has settled.
    pub fn is_over(&self) -> bool {
        self.states.iter().all(|s| s.is_final())
    }

    /// Node `node`'s task settled as `result`. Only a running node settles:
    /// for any other (a finish heard twice, a node already skipped) nothing
    /// changes and the step is empty, so a repeated finish can never fire a
    /// dependent twice.
    pub fn settle(&mut self, graph: &Graph, node: usize, result: NodeResult) -> Step {
        let mut step = Step::default();
        if self.states.get(node) != Some(&NodeState::Running) {
            return step;
        }
        self.states[node] = match result {
            NodeResult::Succeeded => NodeState::Succeeded,
            NodeResult::Failed => NodeState::Failed,
            NodeResult::Cancelled => NodeState::Cancelled,
        };
        let mut settled = vec![node];
        while let Some(done) = settled.pop() {
            for &next in graph.dependents(done) {
                if self.states[next] != NodeState::Waiting {
                    continue;
                }
                match self.readiness(graph, next) {
                    Readiness::Wait => {}
                    Readiness::Run => {
                        self.states[next] = NodeState::Running;
                        step.enqueue.push(next);
                    }
                    Readiness::Skip => {
                        self.states[next] = NodeState::Skipped;
                        step.skipped.push(next);
                        settled.push(next);
                    }
                }
            }
        }
        self.after_settling(graph, &mut step);
        step
    }

    /// Whether waiting node `node` runs, is skipped, or waits on: skipped as
    /// soon as a dependency it waits for under `fail` did not succeed; run
    /// once every dependency has settled.
    fn readiness(&self, graph: &Graph, node: usize) -> Readiness {
        let mut all_settled = true;
        for &(dep, policy) in graph.dependencies(node) {
            let state = self.states[dep];
            if policy == EdgePolicy::Fail && state.is_failure() {
                return Readiness::Skip;
            }
            all_settled &= state.is_final();
        }
        if all_settled {
            Readiness::Run
        } else {
            Readiness::Wait
        }
    }

    /// Ends the body when its last node has settled (the callbacks for that
    /// end run, the others are skipped), and the workflow when every node
    /// has.
    fn after_settling(&mut self, graph: &Graph, step: &mut Step) {
        if self.outcome.is_none() && self.states[..graph.body()].iter().all(|s| s.is_final()) {
            let outcome = body_outcome(graph, &self.states);
            self.outcome = Some(outcome);
            step.body_ended = Some(outcome);
            for node in graph.body()..graph.len() {
                let fires = match graph.when(node) {
                    Some(WhenEnded::Complete) => true,
                    Some(WhenEnded::Success) => outcome == WorkflowOutcome::Succeeded,
                    Some(WhenEnded::Failure) => outcome == WorkflowOutcome::Failed,
                    None => false,
                };
                if fires {
                    self.states[node] = NodeState::Running;
                    step.enqueue.push(node);
                } else {
                    self.states[node] = NodeState::Skipped;
                    step.skipped.push(node);
                }
            }
        }
        if step.enqueue.is_empty() && self.is_over() {
            step.ended = self.outcome;
        }
    }
}

/// Whether a waiting node can move.
enum Readiness {
    Wait,
    Run,
    Skip,
}

/// How a body whose nodes have all settled ended: failed if a node did not
/// succeed and no dependent took its failure in (every node waiting for it
/// does so under `ignore`, and there is at least one).
fn body_outcome(graph: &Graph, states: &[NodeState]) -> WorkflowOutcome {
    let counted = (0..graph.body()).any(|node| {
        states[node].is_failure() && {
            let dependents = graph.dependents(node);
            dependents.is_empty()
                || dependents.iter().any(|&d| {
                    graph
                        .dependencies(d)
                        .iter()
                        .any(|&(dep, policy)| dep == node && policy != EdgePolicy::Ignore)
                })
        }
    });
    if counted {
        WorkflowOutcome::Failed
    } else {
        WorkflowOutcome::Succeeded
    }
}
