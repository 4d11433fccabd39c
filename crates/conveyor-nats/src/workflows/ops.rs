//! Cancelling a workflow and retrying its failed part: each one
//! compare-and-set on the workflow's entry, deciding with
//! `conveyor_core::workflow::ledger`, then the tasks it touches.

use conveyor_core::workflow::{ledger, NodeState, Progress, Retried, WorkflowId};
use conveyor_core::{Administration, Error, TaskId};

use super::settle::{apply, contended};
use crate::backend::NatsBackend;

impl NatsBackend {
    /// Cancels every node of workflow `id` that has not settled, then the
    /// tasks of those that were running (a task created meanwhile is
    /// cancelled by its creator, `settle.rs`).
    pub(crate) async fn cancel_flow(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        for _ in 0..100 {
            let Some((mut entry, rev)) = self.read_flow(id.0).await? else {
                return Ok(None);
            };
            let Some(graph) = self.graph_of(id.0, &entry).await? else {
                return Ok(None);
            };
            let states = entry.states();
            let mut progress = Progress::from_states(&graph, states.clone())?;
            let (nodes, step) = ledger::cancel_all(&graph, &mut progress)?;
            if nodes.is_empty() {
                return Ok(Some(0));
            }
            entry.cancelled = true;
            entry.pending.clear();
            apply(&mut entry, &progress, &step, self.now());
            if self.write_flow(id.0, &entry, rev).await?.is_none() {
                continue;
            }
            let running: Vec<u64> = nodes
                .iter()
                .filter(|&&n| states[n] == NodeState::Running)
                .filter_map(|&n| entry.task(n))
                .collect();
            for task in running {
                match self.cancel(TaskId(task)).await {
                    Ok(_) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Some(nodes.len() as u64));
        }
        Err(contended(id.0))
    }

    /// Puts the failed part of the ended workflow `id` back to run, under
    /// fresh task ids.
    pub(crate) async fn retry_flow(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        let mut base = None;
        for _ in 0..100 {
            let Some((mut entry, rev)) = self.read_flow(id.0).await? else {
                return Ok(None);
            };
            let Some(graph) = self.graph_of(id.0, &entry).await? else {
                return Ok(None);
            };
            let mut progress = Progress::from_states(&graph, entry.states())?;
            let Some((nodes, step)) = ledger::retry_failed(&graph, &mut progress)? else {
                return Ok(Some(Retried::Running));
            };
            if nodes.is_empty() {
                return Ok(Some(Retried::Nodes(0)));
            }
            let first = match base {
                Some(b) => b,
                None => {
                    let b = self.inner.ledger.alloc_ids(graph.len() as u64).await?;
                    *base.insert(b)
                }
            };
            entry.new_run(&nodes, first);
            entry.cancelled = false;
            entry.ended_at = None;
            apply(&mut entry, &progress, &step, self.now());
            let Some(rev) = self.write_flow(id.0, &entry, rev).await? else {
                continue;
            };
            self.flush(id.0, &graph, entry, rev).await?;
            return Ok(Some(Retried::Nodes(nodes.len() as u64)));
        }
        Err(contended(id.0))
    }
}
