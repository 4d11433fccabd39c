//! The stuck-node check: which nodes of a running workflow can no longer
//! move by themselves.
//!
//! A store settles a node in the same atomic step as its task's end, and
//! maintenance settles any end a crash left, so a node is stuck only when
//! something outside those steps broke the chain: a node task's record
//! deleted by hand, an end that stayed unsettled past maintenance, or rows
//! changed under the store. The check reads a workflow as callers do, with
//! its running nodes' tasks, and names each such node with why.

use super::record::WorkflowRecord;
use super::{NodeResult, NodeState};
use crate::clock::Timestamp;
use crate::task::TaskId;
use crate::task_state::TaskState;

/// Why a node cannot move by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StuckReason {
    /// It runs, but has no task, or its task's record is gone: nothing will
    /// ever settle it.
    TaskGone,
    /// It runs, but its task ended (in this state, at this time) longer ago
    /// than the grace the check allows, and the node was not settled.
    EndNotSettled(TaskState, Option<Timestamp>),
    /// It waits (or, expanded, waits for the nodes it added), but
    /// everything it waits for has settled: the step that should have
    /// started, skipped or settled it did not happen.
    NothingLeftToWaitFor,
}

impl StuckReason {
    /// The reason in words, for people.
    pub fn describe(&self) -> String {
        match self {
            StuckReason::TaskGone => "running, but its task's record is gone".into(),
            StuckReason::EndNotSettled(state, _) => {
                format!(
                    "its task is {} but the node was never settled",
                    state.as_str()
                )
            }
            StuckReason::NothingLeftToWaitFor => {
                "waiting, but everything it waits for has settled".into()
            }
        }
    }

    /// A short code: `task_gone`, `end_not_settled`,
    /// `nothing_left_to_wait_for`.
    pub fn code(&self) -> &'static str {
        match self {
            StuckReason::TaskGone => "task_gone",
            StuckReason::EndNotSettled(..) => "end_not_settled",
            StuckReason::NothingLeftToWaitFor => "nothing_left_to_wait_for",
        }
    }
}

/// A node the check found stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckNode {
    /// The node's name.
    pub name: String,
    /// Its task, if it has one.
    pub task: Option<TaskId>,
    /// Why it cannot move.
    pub reason: StuckReason,
}

/// What the check knows of a node task: its state and when it finished,
/// or `None` when its record is gone.
pub type TaskSeen = Option<(TaskState, Option<Timestamp>)>;

/// The nodes of `w` that cannot move by themselves. `task` gives the
/// record of a running node's task; an end that finished after
/// `settled_by` (now minus the time maintenance takes to settle a
/// crash's ends) is spared, as its settle may still be under way.
pub fn stuck_nodes(
    w: &WorkflowRecord,
    settled_by: Timestamp,
    mut task: impl FnMut(TaskId) -> TaskSeen,
) -> Vec<StuckNode> {
    let body_over = w
        .nodes
        .iter()
        .filter(|n| n.callback.is_none())
        .all(|n| n.state.is_final());
    let mut out = Vec::new();
    for node in &w.nodes {
        let reason = match node.state {
            NodeState::Running if node.expanded.is_some() => {
                let prefix = format!("{}/", node.name);
                w.nodes
                    .iter()
                    .filter(|n| n.name.starts_with(&prefix))
                    .all(|n| n.state.is_final())
                    .then_some(StuckReason::NothingLeftToWaitFor)
            }
            NodeState::Running => match node.task.map(|t| (t, task(t))) {
                None | Some((_, None)) => Some(StuckReason::TaskGone),
                Some((_, Some((state, at)))) if NodeResult::of(state).is_some() => {
                    let late = at.is_none_or(|at| at < settled_by);
                    late.then_some(StuckReason::EndNotSettled(state, at))
                }
                Some(_) => None,
            },
            NodeState::Waiting => {
                let released = match node.callback {
                    Some(_) => body_over,
                    None => node
                        .after
                        .iter()
                        .all(|dep| w.node(dep).is_some_and(|d| d.state.is_final())),
                };
                released.then_some(StuckReason::NothingLeftToWaitFor)
            }
            _ => None,
        };
        if let Some(reason) = reason {
            out.push(StuckNode {
                name: node.name.clone(),
                task: node.task,
                reason,
            });
        }
    }
    out
}
