//! Retrying a workflow's failed part: the decision of
//! `ledger::retry_failed` over every row read at one version, written back
//! by `wf_apply` (which also makes the nodes put back forget their task and
//! output, and reopens the workflow) only if the workflow is still at that
//! version.

use std::collections::{HashMap, HashSet};

use conveyor_core::workflow::{
    ledger, NodeOutput, NodeResult, NodeState, ReadAhead, Retried, Step, WorkflowId,
};
use conveyor_core::Error;

use super::codec::{self, field};
use super::view::Change;
use crate::RedisBackend;

/// How many times a retry reads a workflow again because its nodes moved
/// between the read and the write.
const TRIES: usize = 1_000;

impl RedisBackend {
    /// The body of `Workflows::retry_workflow`.
    pub(crate) async fn retry_whole(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        let wf = id.0;
        for _ in 0..TRIES {
            if let Some(done) = self.try_retry(wf).await? {
                return Ok(done);
            }
        }
        Err(Error::backend_other(format!(
            "workflow {wf} changed under {TRIES} retries in a row"
        )))
    }

    /// One try of [`retry_whole`](Self::retry_whole): `None` when the
    /// workflow changed between the read and the write.
    async fn try_retry(&self, wf: u64) -> Result<Option<Option<Retried>>, Error> {
        let Some(head) = self.wf_head(wf).await? else {
            return Ok(Some(None));
        };
        let graph = head.graph.clone();
        let every: Vec<usize> = (0..graph.len()).collect();
        let mut ahead = ReadAhead::new(head.tally);
        if !self.wf_rows(wf, &head.version, &every, &mut ahead).await? {
            return Ok(None);
        }
        // Nodes made ready whose task cannot be made fail at once, and the
        // decision runs again with them (as a settle does).
        let mut unmade: Vec<(usize, String)> = Vec::new();
        loop {
            let decided = self
                .wf_decide(wf, &head.version, &mut ahead, |l| {
                    let Some((nodes, mut all)) = ledger::retry_failed(&graph, l)? else {
                        return Ok(None);
                    };
                    for &(node, _) in &unmade {
                        all.merge(ledger::settle(&graph, l, node, NodeResult::Failed)?);
                    }
                    Ok(Some((nodes, all)))
                })
                .await?;
            let Some(decided) = decided else {
                return Ok(None);
            };
            let Some((nodes, step)) = decided else {
                return Ok(Some(Some(Retried::Running)));
            };
            if nodes.is_empty() {
                return Ok(Some(Some(Retried::Nodes(0))));
            }
            let mut change = Change::from_decision(&head, &ahead, false);
            // Reopened: it ends again only if this very step ends it.
            change.class = change.tally.map_or("", |t| codec::class(None, &t, false));
            change.reopened = true;
            let mut known: HashMap<usize, NodeOutput> = HashMap::new();
            for (node, error) in &unmade {
                change
                    .outputs
                    .push((field('e', *node), error.clone().into_bytes()));
                known.insert(*node, (NodeState::Failed, None, Some(error.clone())));
            }
            let ready = ready_nodes(&change, step);
            let composed = self
                .compose_ready(wf, &head.version, &graph, &ready, &change.rows, &mut known)
                .await?;
            let Some((made, more)) = composed else {
                return Ok(None);
            };
            if more.is_empty() {
                (change.ready, change.tasks) = made.into_iter().unzip();
                let applied = self.wf_apply(wf, &head.version, &change).await?;
                return Ok(applied.map(|_| Some(Retried::Nodes(nodes.len() as u64))));
            }
            unmade.extend(more);
        }
    }
}

/// The nodes `step` made ready that the change leaves running.
fn ready_nodes(change: &Change, step: Step) -> Vec<usize> {
    let running: HashSet<usize> = change
        .rows
        .iter()
        .filter(|(_, r)| r.state == NodeState::Running)
        .map(|&(n, _)| n)
        .collect();
    step.enqueue
        .into_iter()
        .filter(|n| running.contains(n))
        .collect()
}
