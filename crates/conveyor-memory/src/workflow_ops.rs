//! Workflows on the state: stored beside the tasks, moved forward under the
//! same lock as the finish, cancel or lease recovery that settles a node.

use std::collections::VecDeque;

use conveyor_core::workflow::{
    composed_task, Graph, NodeEnd, NodeOutput, NodeRecord, NodeResult, NodeState, Progress,
    Retried, Step, Submitted, WorkflowFilter, WorkflowId, WorkflowOutcome, WorkflowRecord,
    WorkflowSpec, WorkflowState, WorkflowSummary,
};
use conveyor_core::{Error, TaskId, TaskState, Timestamp};

use crate::state::State;

/// One stored workflow.
#[derive(Debug)]
pub(crate) struct Flow {
    graph: Graph,
    progress: Progress,
    /// Each node's task, once enqueued.
    tasks: Vec<Option<u64>>,
    /// Each settled node's result and error, kept for its dependents.
    outputs: Vec<Option<Output>>,
    created_at: Timestamp,
    ended_at: Option<Timestamp>,
    cancelled: bool,
}

/// What a settled node left.
#[derive(Debug, Clone)]
struct Output {
    result: Option<Vec<u8>>,
    error: Option<String>,
}

impl State {
    /// Stores `spec` and enqueues the nodes that wait for nothing.
    pub(crate) fn submit_workflow(
        &mut self,
        spec: WorkflowSpec,
        now: Timestamp,
    ) -> Result<Submitted, Error> {
        let graph = spec.validate()?;
        let (progress, step) = Progress::start(&graph);
        let id = self.next_workflow;
        self.next_workflow += 1;
        let n = graph.len();
        self.flows.insert(
            id,
            Flow {
                graph,
                progress,
                tasks: vec![None; n],
                outputs: vec![None; n],
                created_at: now,
                ended_at: None,
                cancelled: false,
            },
        );
        let first = step.enqueue.clone();
        self.apply_step(id, step, now);
        let flow = &self.flows[&id];
        let started = first
            .into_iter()
            .filter_map(|node| {
                flow.tasks[node].map(|t| (flow.graph.nodes()[node].name.clone(), TaskId(t)))
            })
            .collect();
        Ok(Submitted {
            id: WorkflowId(id),
            started,
        })
    }

    /// Settles the node task `id` belongs to, if any, now that it reached
    /// the final state `to` (called by every move to a final state).
    pub(crate) fn settle_node_of(&mut self, id: u64, to: TaskState, now: Timestamp) {
        let Some(&(wf, node)) = self.flow_of.get(&id) else {
            return;
        };
        let Some(result) = NodeResult::of(to) else {
            return;
        };
        let output = self.tasks.get(&id).map(|e| Output {
            result: e.record.result.clone(),
            error: e.record.error.clone(),
        });
        let Some(flow) = self.flows.get_mut(&wf) else {
            return;
        };
        if flow.tasks[node] != Some(id) {
            return;
        }
        if flow.progress.state(node) != Some(NodeState::Running) {
            return;
        }
        let asked = output.as_ref().and_then(|o| o.result.as_deref());
        let step = match NodeEnd::of(&flow.graph, node, result, asked) {
            NodeEnd::Settle(result) => {
                if !flow.graph.is_expanded(node) {
                    flow.outputs[node] = output;
                }
                flow.progress.settle(&flow.graph, node, result)
            }
            NodeEnd::Expand { graph, added, .. } => {
                flow.graph = *graph;
                flow.tasks.resize(flow.graph.len(), None);
                flow.outputs.resize(flow.graph.len(), None);
                flow.outputs[node] = output;
                flow.progress.expand(&flow.graph, node, added)
            }
            NodeEnd::Refused(why) => {
                flow.outputs[node] = Some(Output {
                    result: output.and_then(|o| o.result),
                    error: Some(why),
                });
                flow.progress.settle(&flow.graph, node, NodeResult::Failed)
            }
        };
        self.apply_step(wf, step, now);
    }

    /// Enqueues the nodes a step made ready (their params composed from
    /// their dependencies' outputs); a node whose params cannot be composed
    /// fails at once, and what that decides is applied in turn.
    fn apply_step(&mut self, wf: u64, step: Step, now: Timestamp) {
        let mut steps = VecDeque::from([step]);
        while let Some(step) = steps.pop_front() {
            if step.ended.is_some() {
                if let Some(flow) = self.flows.get_mut(&wf) {
                    flow.ended_at = Some(now);
                }
            }
            for node in step.enqueue {
                let Some(flow) = self.flows.get(&wf) else {
                    return;
                };
                match node_task(flow, node) {
                    Ok(task) => {
                        let Some(enqueued) = self.enqueue(vec![task], now).pop() else {
                            continue;
                        };
                        let task = enqueued.id.0;
                        self.flow_woke = true;
                        self.flow_of.insert(task, (wf, node));
                        if let Some(flow) = self.flows.get_mut(&wf) {
                            flow.tasks[node] = Some(task);
                        }
                    }
                    Err(e) => {
                        let Some(flow) = self.flows.get_mut(&wf) else {
                            return;
                        };
                        flow.outputs[node] = Some(Output {
                            result: None,
                            error: Some(e.to_string()),
                        });
                        steps.push_back(flow.progress.settle(
                            &flow.graph,
                            node,
                            NodeResult::Failed,
                        ));
                    }
                }
            }
        }
    }

    /// The workflows `filter` admits, newest first.
    pub(crate) fn list_workflows(&self, filter: &WorkflowFilter) -> Vec<WorkflowSummary> {
        let mut ids: Vec<u64> = self.flows.keys().copied().collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.into_iter()
            .filter_map(|id| {
                let flow = self.flows.get(&id)?;
                let states = flow.progress.states();
                let left = states.iter().filter(|s| !s.is_final()).count() as u32;
                Some(WorkflowSummary {
                    id: WorkflowId(id),
                    state: WorkflowState::of(flow.cancelled, left, flow.progress.outcome()),
                    nodes: states.len() as u32,
                    left,
                    created_at: flow.created_at,
                    ended_at: flow.ended_at,
                })
            })
            .filter(|s| filter.admits(s))
            .take(filter.limit)
            .collect()
    }

    /// Workflow `id` as callers read it.
    pub(crate) fn workflow(&self, id: WorkflowId) -> Option<WorkflowRecord> {
        let flow = self.flows.get(&id.0)?;
        let states = flow.progress.states();
        let graph = &flow.graph;
        let nodes = (0..graph.len())
            .map(|i| NodeRecord::of(graph, i, states[i], flow.tasks[i].map(TaskId)))
            .collect();
        let left = states.iter().filter(|s| !s.is_final()).count() as u32;
        let state = WorkflowState::of(flow.cancelled, left, flow.progress.outcome());
        Some(WorkflowRecord {
            id,
            state,
            nodes,
            created_at: flow.created_at,
            ended_at: flow.ended_at,
        })
    }

    /// Cancels every node of workflow `id` that has not settled, and the
    /// tasks of its running nodes. Returns how many nodes, and the tasks
    /// cancelled.
    pub(crate) fn cancel_workflow(
        &mut self,
        id: WorkflowId,
        now: Timestamp,
    ) -> Result<Option<(u64, Vec<TaskId>)>, Error> {
        let Some(flow) = self.flows.get_mut(&id.0) else {
            return Ok(None);
        };
        let (nodes, _) =
            conveyor_core::workflow::ledger::cancel_all(&flow.graph, &mut flow.progress)?;
        if nodes.is_empty() {
            return Ok(Some((0, Vec::new())));
        }
        flow.cancelled = true;
        flow.ended_at = Some(now);
        let tasks: Vec<u64> = nodes.iter().filter_map(|&n| flow.tasks[n]).collect();
        let mut cancelled = Vec::new();
        for task in tasks {
            if self.cancel(TaskId(task), now)? == TaskState::Cancelled {
                cancelled.push(TaskId(task));
            }
        }
        Ok(Some((nodes.len() as u64, cancelled)))
    }

    /// Puts the failed part of the ended workflow `id` back to run: the
    /// nodes put back forget their task and output, and the ready ones are
    /// enqueued.
    pub(crate) fn retry_workflow(
        &mut self,
        id: WorkflowId,
        now: Timestamp,
    ) -> Result<Option<Retried>, Error> {
        let Some(flow) = self.flows.get_mut(&id.0) else {
            return Ok(None);
        };
        let Some((nodes, step)) =
            conveyor_core::workflow::ledger::retry_failed(&flow.graph, &mut flow.progress)?
        else {
            return Ok(Some(Retried::Running));
        };
        if nodes.is_empty() {
            return Ok(Some(Retried::Nodes(0)));
        }
        flow.cancelled = false;
        flow.ended_at = None;
        for &node in &nodes {
            flow.outputs[node] = None;
            if let Some(task) = flow.tasks[node].take() {
                self.flow_of.remove(&task);
            }
        }
        self.apply_step(id.0, step, now);
        Ok(Some(Retried::Nodes(nodes.len() as u64)))
    }

    /// Drops the workflows that ended before their retention: a succeeded
    /// one before `finished_before`, a failed or cancelled one (kept like a
    /// dead task, for inspection) before `dead_before`.
    pub(crate) fn prune_workflows(&mut self, finished_before: Timestamp, dead_before: Timestamp) {
        let gone: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                let succeeded =
                    !f.cancelled && f.progress.outcome() == Some(WorkflowOutcome::Succeeded);
                let before = if succeeded {
                    finished_before
                } else {
                    dead_before
                };
                f.ended_at.is_some_and(|at| at < before)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(flow) = self.flows.remove(&id) {
                for task in flow.tasks.iter().flatten() {
                    self.flow_of.remove(task);
                }
            }
        }
    }

    /// Whether a workflow enqueued tasks since the last call (workers are
    /// woken then).
    pub(crate) fn take_flow_wake(&mut self) -> bool {
        std::mem::take(&mut self.flow_woke)
    }
}

/// Node `node`'s task, its params composed from its dependencies' outputs.
fn node_task(flow: &Flow, node: usize) -> Result<conveyor_core::NewTask, Error> {
    let outputs: Vec<NodeOutput> = flow
        .graph
        .reads(node)
        .into_iter()
        .map(|n| {
            let output = flow.outputs[n].as_ref();
            (
                flow.progress.state(n).unwrap_or(NodeState::Skipped),
                output.and_then(|o| o.result.clone()),
                output.and_then(|o| o.error.clone()),
            )
        })
        .collect();
    composed_task(&flow.graph, node, &outputs)
}
