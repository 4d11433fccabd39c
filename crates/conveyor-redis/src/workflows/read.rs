//! Reading a workflow back, cancelling one, and pruning ended ones.

use std::collections::HashMap;

use conveyor_core::workflow::{
    ledger, NodeRecord, ReadAhead, WorkflowId, WorkflowRecord, WorkflowState,
};
use conveyor_core::{Error, Retention, TaskId, Timestamp};

use super::codec::{self, field};
use super::view::Change;
use crate::reply::{bad, redis_error};
use crate::scripts::Op;
use crate::RedisBackend;

/// How many times a cancel reads a workflow again because its nodes moved
/// between the read and the write.
const TRIES: usize = 1_000;

impl RedisBackend {
    /// The body of `Workflows::workflow`.
    pub(crate) async fn read_workflow(
        &self,
        id: WorkflowId,
    ) -> Result<Option<WorkflowRecord>, Error> {
        let wf = id.0;
        let mut conn = self.inner.conn.clone();
        let fields: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.wf_key(wf))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("reading a workflow", e))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let need = |f: &str| {
            fields
                .get(f)
                .ok_or_else(|| bad(format!("workflow {wf} has no field {f}")))
        };
        let expansions = codec::expansion_count(fields.get(codec::EXPANSIONS).map(Vec::as_slice))?;
        let graph = match self.inner.graphs.get(wf) {
            Some(g) if g.expansions() == expansions => g,
            _ => {
                let docs = (0..expansions)
                    .map(|k| need(&codec::expansion_field(k)).map(Vec::as_slice))
                    .collect::<Result<Vec<&[u8]>, Error>>()?;
                self.inner.graphs.decode_grown(wf, need("spec")?, docs)?
            }
        };
        let tally = codec::parse_tally(need("t")?, wf)?;
        let mut nodes = Vec::with_capacity(graph.len());
        for node in 0..graph.len() {
            let row = codec::parse_row(need(&field('n', node))?, wf, node)?;
            let task = fields
                .get(&field('t', node))
                .map(|v| codec::parse_id(v, "a node's task").map(TaskId))
                .transpose()?;
            nodes.push(NodeRecord::of(&graph, node, row.state, task));
        }
        let time = |f: &str| codec::parse_time(fields.get(f).map(Vec::as_slice), wf, f);
        Ok(Some(WorkflowRecord {
            id,
            state: WorkflowState::of(
                fields.get("k").is_some_and(|k| k == b"1"),
                tally.left,
                tally.outcome,
            ),
            nodes,
            created_at: time("c")?.unwrap_or(Timestamp(0)),
            ended_at: time("x")?,
        }))
    }

    /// The body of `Workflows::cancel_workflow`: every node not settled is
    /// cancelled, and the tasks of running ones, in one script call.
    pub(crate) async fn cancel_whole(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        let wf = id.0;
        for _ in 0..TRIES {
            let Some(head) = self.wf_head(wf).await? else {
                return Ok(None);
            };
            let graph = head.graph.clone();
            let every: Vec<usize> = (0..graph.len()).collect();
            let mut ahead = ReadAhead::new(head.tally);
            if !self.wf_rows(wf, &head.version, &every, &mut ahead).await? {
                continue;
            }
            let decided = self
                .wf_decide(wf, &head.version, &mut ahead, |l| {
                    ledger::cancel_all(&graph, l)
                })
                .await?;
            let Some((cancelled, _)) = decided else {
                continue;
            };
            if cancelled.is_empty() {
                return Ok(Some(0));
            }
            // The tasks of the nodes cancelled that have one (the running
            // ones): cancelled with them, their ends settled here.
            let fields = cancelled.iter().map(|&n| field('t', n));
            let Some(got) = self.wf_fields_at(wf, &head.version, fields).await? else {
                continue;
            };
            let tasks = got
                .iter()
                .flatten()
                .map(|v| codec::parse_id(v, "a node's task"))
                .collect::<Result<Vec<u64>, Error>>()?;
            let mut change = Change::from_decision(&head, &ahead, true);
            change.settled = tasks.clone();
            change.cancel = tasks;
            if self.wf_apply(wf, &head.version, &change).await?.is_some() {
                return Ok(Some(cancelled.len() as u64));
            }
        }
        Err(Error::backend_other(format!(
            "workflow {wf} changed under {TRIES} cancels in a row"
        )))
    }

    /// Deletes the workflows that ended before their retention (see
    /// `Maintenance::prune`): how many.
    pub(crate) async fn prune_workflows(&self, retention: Retention) -> Result<u64, Error> {
        let now = self.inner.clock.now();
        let mut inv = self.call(Op::WfPrune);
        inv.arg(now.minus(retention.finished).as_millis())
            .arg(now.minus(retention.dead).as_millis())
            .arg(crate::backend::MAINTENANCE_BATCH);
        self.run_batches("pruning workflows", &inv, false).await
    }
}
