//! A workflow's decisions over what a store keeps per node: each settle
//! reads and writes only the node, its dependents (and theirs, when a skip
//! spreads) and one tally, so a chord of 10,000 header tasks costs each
//! header's finish a few rows, not the whole workflow.
//!
//! A store keeps, beside the graph, a [`NodeRow`] per node (its state, and
//! how many of its dependencies have not settled) and one [`Tally`] per
//! workflow (how many nodes of the body and in all have not settled, and
//! whether a failure counts against it). It implements [`Ledger`] over them
//! inside the atomic step that finishes the node's task, and calls
//! [`start`] when it stores the workflow and [`settle`] when a node's task
//! settles. The counters move only when a node moves from running (or
//! waiting) to a final state, which happens once per node: a finish heard
//! twice finds the node settled and changes nothing, so no dependent is
//! counted down twice and no callback fires twice.

use super::graph::{EdgePolicy, Graph, WhenEnded};
use super::progress::{NodeResult, NodeState, Step, WorkflowOutcome};
use crate::Error;

/// What a store keeps of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRow {
    /// Where the node stands.
    pub state: NodeState,
    /// How many of its dependencies have not settled yet.
    pub waiting_on: u32,
}

/// What a store keeps of a workflow as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Nodes of the body that have not settled.
    pub body_left: u32,
    /// Nodes, callbacks included, that have not settled.
    pub left: u32,
    /// Some node of the body failed, was cancelled or skipped, and no
    /// dependent took that in (see [`counts_against`]).
    pub failed: bool,
    /// How the body ended, once it has.
    pub outcome: Option<WorkflowOutcome>,
}

/// A store's rows of one workflow, read and written inside one atomic step.
pub trait Ledger {
    /// Node `node`'s row.
    fn row(&mut self, node: usize) -> Result<NodeRow, Error>;
    /// Writes node `node`'s row.
    fn set_row(&mut self, node: usize, row: NodeRow) -> Result<(), Error>;
    /// Stores a row for node `node`, one an expansion added (it had none).
    fn add_row(&mut self, node: usize, row: NodeRow) -> Result<(), Error>;
    /// The workflow's tally.
    fn tally(&mut self) -> Result<Tally, Error>;
    /// Writes the workflow's tally.
    fn set_tally(&mut self, tally: Tally) -> Result<(), Error>;
}

/// A workflow's first rows, before anything ran: every node waiting on all
/// of its dependencies, every node left.
pub fn first_rows(graph: &Graph) -> (Vec<NodeRow>, Tally) {
    let rows = (0..graph.len())
        .map(|node| NodeRow {
            state: NodeState::Waiting,
            waiting_on: graph.dependencies(node).len() as u32,
        })
        .collect();
    let tally = Tally {
        body_left: graph.body() as u32,
        left: graph.len() as u32,
        failed: false,
        outcome: None,
    };
    (rows, tally)
}

/// Starts a workflow whose rows are [`first_rows`]: the nodes that wait for
/// nothing run (and the callbacks at once, when the body is empty: an empty
/// group ends at once).
pub fn start(graph: &Graph, ledger: &mut impl Ledger) -> Result<Step, Error> {
    let mut step = Step::default();
    let mut tally = ledger.tally()?;
    for node in graph.body_nodes() {
        if graph.dependencies(node).is_empty() {
            let mut row = ledger.row(node)?;
            row.state = NodeState::Running;
            ledger.set_row(node, row)?;
            step.enqueue.push(node);
        }
    }
    end_body_if_over(graph, ledger, &mut tally, &mut step)?;
    ledger.set_tally(tally)?;
    Ok(step)
}

/// Node `node`'s task settled as `result`. Only a running node settles: for
/// any other (a finish heard twice, a node already skipped or cancelled)
/// nothing changes and the step is empty.
pub fn settle(
    graph: &Graph,
    ledger: &mut impl Ledger,
    node: usize,
    result: NodeResult,
) -> Result<Step, Error> {
    let mut step = Step::default();
    if node >= graph.len() {
        return Err(Error::InvalidConfig(format!(
            "a workflow of {} nodes has no node {node}",
            graph.len()
        )));
    }
    if graph.is_expanded(node) {
        // Its task's end was taken in when it expanded: it settles with
        // the nodes it added.
        return Ok(step);
    }
    let mut row = ledger.row(node)?;
    if row.state != NodeState::Running {
        return Ok(step);
    }
    row.state = match result {
        NodeResult::Succeeded => NodeState::Succeeded,
        NodeResult::Failed => NodeState::Failed,
        NodeResult::Cancelled => NodeState::Cancelled,
    };
    let mut tally = ledger.tally()?;
    settled_now(graph, ledger, &mut tally, node, row, &mut step)?;
    ledger.set_tally(tally)?;
    Ok(step)
}

/// Writes node `node`'s `row`, just settled, and applies what follows:
/// its dependents move ([`spread`]) and the body may end.
fn settled_now(
    graph: &Graph,
    ledger: &mut impl Ledger,
    tally: &mut Tally,
    node: usize,
    row: NodeRow,
    step: &mut Step,
) -> Result<(), Error> {
    ledger.set_row(node, row)?;
    spread(graph, ledger, tally, vec![(node, row.state)], step)?;
    end_body_if_over(graph, ledger, tally, step)
}

/// Counts the nodes of `settled` out, and moves their dependents: a
/// dependent whose last awaited node settled runs (or, when it expanded,
/// settles as succeeded), one a failure reaches under `fail` is skipped
/// (an expanded one fails), and those settle in turn.
fn spread(
    graph: &Graph,
    ledger: &mut impl Ledger,
    tally: &mut Tally,
    mut settled: Vec<(usize, NodeState)>,
    step: &mut Step,
) -> Result<(), Error> {
    while let Some((done, state)) = settled.pop() {
        count_settled(graph, tally, done, state);
        for (k, &next) in graph.dependents(done).iter().enumerate() {
            let mut row = ledger.row(next)?;
            let expanded = graph.is_expanded(next);
            let waits = match row.state {
                NodeState::Waiting => true,
                NodeState::Running => expanded,
                _ => false,
            };
            if !waits {
                continue;
            }
            let policy = graph.dependent_policy(done, k);
            if policy == EdgePolicy::Fail && state.is_failure() {
                row.state = if expanded {
                    NodeState::Failed
                } else {
                    step.skipped.push(next);
                    NodeState::Skipped
                };
                ledger.set_row(next, row)?;
                settled.push((next, row.state));
                continue;
            }
            row.waiting_on = row.waiting_on.saturating_sub(1);
            if row.waiting_on == 0 {
                if expanded {
                    row.state = NodeState::Succeeded;
                    settled.push((next, row.state));
                } else {
                    row.state = NodeState::Running;
                    step.enqueue.push(next);
                }
            }
            ledger.set_row(next, row)?;
        }
    }
    Ok(())
}

/// Node `node`, running, expanded: `graph` is the graph with its
/// expansion (see [`Graph::expand`]), `added` the positions that added.
/// Stores the added nodes' rows, runs those that wait for nothing, and
/// makes `node` wait for the expansion's last nodes (an empty expansion
/// settles it at once, as succeeded). Only a running node expands: for any
/// other (its task's end heard twice) nothing changes and the step is
/// empty.
pub fn expand(
    graph: &Graph,
    ledger: &mut impl Ledger,
    node: usize,
    added: std::ops::Range<usize>,
) -> Result<Step, Error> {
    let mut step = Step::default();
    let mut row = ledger.row(node)?;
    if row.state != NodeState::Running || added.end > graph.len() {
        return Ok(step);
    }
    let mut tally = ledger.tally()?;
    let count = added.len() as u32;
    tally.body_left += count;
    tally.left += count;
    for n in added {
        let waiting_on = graph.dependencies(n).len() as u32;
        let state = if waiting_on == 0 {
            step.enqueue.push(n);
            NodeState::Running
        } else {
            NodeState::Waiting
        };
        ledger.add_row(n, NodeRow { state, waiting_on })?;
    }
    row.waiting_on = graph.waits_for(node).len() as u32;
    if row.waiting_on == 0 {
        row.state = NodeState::Succeeded;
        settled_now(graph, ledger, &mut tally, node, row, &mut step)?;
    } else {
        ledger.set_row(node, row)?;
    }
    ledger.set_tally(tally)?;
    Ok(step)
}

/// Cancels every node that has not settled: running ones (their tasks are
/// the caller's to cancel) and waiting ones, callbacks included; nothing
/// runs after. Returns the nodes it cancelled, and sets the step's end.
pub fn cancel_all(graph: &Graph, ledger: &mut impl Ledger) -> Result<(Vec<usize>, Step), Error> {
    let mut tally = ledger.tally()?;
    let mut cancelled = Vec::new();
    for node in 0..graph.len() {
        let mut row = ledger.row(node)?;
        if row.state.is_final() {
            continue;
        }
        row.state = NodeState::Cancelled;
        ledger.set_row(node, row)?;
        count_settled(graph, &mut tally, node, NodeState::Cancelled);
        cancelled.push(node);
    }
    let mut step = Step::default();
    if tally.outcome.is_none() {
        tally.outcome = Some(WorkflowOutcome::Failed);
        step.body_ended = tally.outcome;
    }
    if !cancelled.is_empty() {
        step.ended = tally.outcome;
    }
    ledger.set_tally(tally)?;
    Ok((cancelled, step))
}

/// Puts the failed part of an ended workflow back to run, or `None` (and
/// nothing changes) while it has not ended.
///
/// Every node of the body that failed, was cancelled or was skipped waits
/// again; the nodes that succeeded stay settled with their results, so a
/// node put back waits only for its dependencies that were put back too,
/// and those waiting for nothing now run. The callbacks wait for the new
/// end of the body (one that already ran runs again if the new end calls
/// for it). When the body had succeeded, only the callbacks that failed or
/// were cancelled run again. Returns the nodes put back (none when nothing
/// had failed) and the step: the nodes to enqueue.
pub fn retry_failed(
    graph: &Graph,
    ledger: &mut impl Ledger,
) -> Result<Option<(Vec<usize>, Step)>, Error> {
    let mut tally = ledger.tally()?;
    if tally.left > 0 {
        return Ok(None);
    }
    let mut step = Step::default();
    let states = (0..graph.len())
        .map(|node| ledger.row(node).map(|row| row.state))
        .collect::<Result<Vec<_>, _>>()?;
    let mut again: Vec<usize> = graph
        .body_nodes()
        .filter(|&n| states[n].is_failure())
        .collect();
    if again.is_empty() {
        for node in graph.callbacks() {
            if matches!(states[node], NodeState::Failed | NodeState::Cancelled) {
                set_state(ledger, node, NodeState::Running)?;
                step.enqueue.push(node);
                again.push(node);
            }
        }
        tally.left = again.len() as u32;
        ledger.set_tally(tally)?;
        return Ok(Some((again, step)));
    }
    // An expanded node put back waits, running, for its expansion's part
    // put back (a part that must hold a node that failed: the node settles
    // in the very step its expansion's last node does).
    for &node in &again {
        let waiting_on = waits_on(graph, &states, node);
        let state = if graph.is_expanded(node) {
            NodeState::Running
        } else if waiting_on == 0 {
            step.enqueue.push(node);
            NodeState::Running
        } else {
            NodeState::Waiting
        };
        ledger.set_row(node, NodeRow { state, waiting_on })?;
    }
    let body_again = again.len() as u32;
    for node in graph.callbacks() {
        let waiting_on = graph.dependencies(node).len() as u32;
        ledger.set_row(
            node,
            NodeRow {
                state: NodeState::Waiting,
                waiting_on,
            },
        )?;
        again.push(node);
    }
    ledger.set_tally(Tally {
        body_left: body_again,
        left: again.len() as u32,
        failed: false,
        outcome: None,
    })?;
    Ok(Some((again, step)))
}

/// How many of what node `node` waits for had not succeeded, by `states`.
fn waits_on(graph: &Graph, states: &[NodeState], node: usize) -> u32 {
    graph
        .waits_for(node)
        .iter()
        .filter(|&&(dep, _)| states[dep] != NodeState::Succeeded)
        .count() as u32
}

/// Sets node `node`'s state, keeping what it waits on.
fn set_state(ledger: &mut impl Ledger, node: usize, state: NodeState) -> Result<(), Error> {
    let mut row = ledger.row(node)?;
    row.state = state;
    ledger.set_row(node, row)
}

/// Counts node `node`, now settled as `state`, out of the tally.
fn count_settled(graph: &Graph, tally: &mut Tally, node: usize, state: NodeState) {
    tally.left = tally.left.saturating_sub(1);
    if !graph.is_callback(node) {
        tally.body_left = tally.body_left.saturating_sub(1);
        if state.is_failure() && counts_against(graph, node) {
            tally.failed = true;
        }
    }
}

/// Whether a failure of body node `node` fails the workflow: unless every
/// node waiting for it (and there is at least one) takes it in under
/// `ignore`.
pub fn counts_against(graph: &Graph, node: usize) -> bool {
    let dependents = graph.dependents(node);
    dependents.is_empty()
        || (0..dependents.len()).any(|k| graph.dependent_policy(node, k) != EdgePolicy::Ignore)
}

/// Ends the body when its last node has settled (the callbacks for that end
/// run, the others are skipped), and the workflow when every node has.
fn end_body_if_over(
    graph: &Graph,
    ledger: &mut impl Ledger,
    tally: &mut Tally,
    step: &mut Step,
) -> Result<(), Error> {
    if tally.outcome.is_none() && tally.body_left == 0 {
        let outcome = if tally.failed {
            WorkflowOutcome::Failed
        } else {
            WorkflowOutcome::Succeeded
        };
        tally.outcome = Some(outcome);
        step.body_ended = Some(outcome);
        for node in graph.callbacks() {
            let fires = match graph.when(node) {
                Some(WhenEnded::Complete) => true,
                Some(WhenEnded::Success) => outcome == WorkflowOutcome::Succeeded,
                Some(WhenEnded::Failure) => outcome == WorkflowOutcome::Failed,
                None => false,
            };
            let mut row = ledger.row(node)?;
            if fires {
                row.state = NodeState::Running;
                step.enqueue.push(node);
            } else {
                row.state = NodeState::Skipped;
                tally.left = tally.left.saturating_sub(1);
                step.skipped.push(node);
            }
            ledger.set_row(node, row)?;
        }
    }
    if step.enqueue.is_empty() && tally.left == 0 {
        step.ended = tally.outcome;
    }
    Ok(())
}
