//! Settling the nodes whose tasks ended. The statements that end tasks
//! record each node task that reaches a final state in `workflow_settles`
//! (a data-modifying CTE of the same statement); whoever ended it (a finish, a cancel,
//! lease recovery) takes those rows right after and settles each node in one
//! transaction with the rows' removal, so a node is settled once however
//! many times its task's end is heard, and a crash between the two leaves
//! the rows for the next taker (maintenance takes any that are left).

use std::sync::Arc;

use conveyor_core::workflow::ledger::Ledger;
use conveyor_core::workflow::{
    is_expansion, ledger, Graph, NodeEnd, NodeResult, NodeState, ReadAhead, Step,
};
use conveyor_core::{Error, TaskId};

use super::tx::{in_tx, node_of, node_param, Tx};
use crate::backend::PostgresBackend;
use crate::row::{self, col};

/// Ended node tasks taken per transaction.
const BATCH: i64 = 200;

impl PostgresBackend {
    /// Settles the nodes of the ended tasks recorded for `tasks` (`None`:
    /// any recorded), in batches of one transaction each; how many were
    /// taken.
    pub(crate) async fn settle_ended(&self, tasks: Option<&[i64]>) -> Result<u64, Error> {
        let what = "settling workflow nodes";
        let mut total = 0;
        loop {
            let taken = in_tx!(self, what, |at| at.settle_batch(tasks))?;
            total += taken;
            // Fewer than a batch: none of `tasks` (or none at all) is left.
            if taken < BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }

    /// [`settle_ended`](Self::settle_ended) after an operation that ended
    /// tasks: a failure is logged, not returned (the operation itself
    /// succeeded; maintenance settles what is left).
    pub(crate) async fn settle_after(&self, tasks: Option<&[i64]>) {
        if let Err(e) = self.settle_ended(tasks).await {
            tracing::warn!(error = %e, "postgres: settling workflow nodes (maintenance will retry)");
        }
    }
}

impl Tx<'_> {
    /// Takes up to a batch of the recorded ends of `tasks` (`None`: any) and
    /// settles their nodes; how many it took.
    async fn settle_batch(&self, tasks: Option<&[i64]>) -> Result<u64, Error> {
        let what = "settling workflow nodes";
        let at = self;
        let sql = &self.backend.inner.workflow_sql;
        let only: Option<Vec<i64>> = tasks.map(<[i64]>::to_vec);
        let taken = at.query(what, &sql.take_ended, &[&only, &BATCH]).await?;
        if taken.is_empty() {
            return Ok(0);
        }
        let ids = taken
            .iter()
            .map(|r| col(r, 0, "task"))
            .collect::<Result<Vec<i64>, Error>>()?;
        // By workflow, then node: concurrent takers lock workflows in
        // the same order. The ends of one workflow settle together: one
        // lock, one read of their rows, one write.
        let mut ends: Vec<End> = Vec::new();
        for r in at.query(what, &sql.ended_nodes, &[&ids]).await? {
            let wf: i64 = col(&r, 0, "workflow")?;
            let node = node_of(col(&r, 1, "node")?, wf)?;
            let code: Option<i16> = col(&r, 2, "state")?;
            let settled = match code {
                None => NodeResult::Failed,
                Some(code) => match NodeResult::of(row::state(TaskId(0), code)?) {
                    Some(settled) => settled,
                    // Requeued since: its next end settles it.
                    None => continue,
                },
            };
            let result: Option<Vec<u8>> = col(&r, 3, "result")?;
            let error: Option<String> = match code {
                None => Some("the node's task record is gone".to_string()),
                Some(_) => col(&r, 4, "error")?,
            };
            if ends.first().is_some_and(|e| e.wf != wf) {
                at.settle_ends(&std::mem::take(&mut ends)).await?;
            }
            ends.push(End {
                wf,
                node,
                settled,
                result,
                error,
            });
        }
        if !ends.is_empty() {
            at.settle_ends(&ends).await?;
        }
        Ok(ids.len() as u64)
    }

    /// Settles `ends`, all of one workflow, under one lock of its row:
    /// the plain ones in one decision, then each that asks for an
    /// expansion on its own (it grows the graph the next one decides over).
    async fn settle_ends(&self, ends: &[End]) -> Result<(), Error> {
        let what = "settling workflow nodes";
        let Some(wf) = ends.first().map(|e| e.wf) else {
            return Ok(());
        };
        let (Some(mut graph), Some((tally, _))) = (self.graph(wf).await?, self.lock(wf).await?)
        else {
            return Ok(());
        };
        let expands = |e: &End| e.result.as_deref().is_some_and(is_expansion);
        if ends.iter().any(|e| e.node >= graph.len() || expands(e)) {
            // A node this process has not seen added, or an expansion to
            // decide over every expansion made so far.
            match self.fresh_graph(wf).await? {
                Some(fresh) => graph = fresh,
                None => return Ok(()),
            }
        }
        let nodes: Vec<i32> = ends.iter().map(|e| node_param(e.node)).collect();
        // An expansion's declaration is not kept as the node's output: its
        // output is its expansion's.
        let results: Vec<Option<&[u8]>> = ends
            .iter()
            .map(|e| e.result.as_deref().filter(|r| !is_expansion(r)))
            .collect();
        let errors: Vec<Option<&str>> = ends.iter().map(|e| e.error.as_deref()).collect();
        let sql = &self.backend.inner.workflow_sql;
        self.execute(what, &sql.keep_output, &[&wf, &nodes, &results, &errors])
            .await?;
        let (expanding, plain): (Vec<&End>, Vec<&End>) = ends.iter().partition(|e| expands(e));
        if !plain.is_empty() {
            let mut first: Vec<usize> = plain
                .iter()
                .flat_map(|e| ReadAhead::likely(&graph, e.node, &tally))
                .collect();
            first.sort_unstable();
            first.dedup();
            let mut ahead = ReadAhead::new(tally);
            let step = self
                .decide(wf, &mut ahead, &first, |l| {
                    let mut all = Step::default();
                    for e in &plain {
                        all.merge(ledger::settle(&graph, l, e.node, e.settled)?);
                    }
                    Ok(all)
                })
                .await?;
            self.apply(wf, &graph, step).await?;
        }
        for e in expanding {
            graph = self.end_expanding(wf, graph, e).await?;
        }
        Ok(())
    }

    /// Settles or expands node `e.node` of workflow `wf` (locked), whose
    /// task's result asks for an expansion, and applies what that decides;
    /// returns the workflow's graph after it.
    async fn end_expanding(
        &self,
        wf: i64,
        graph: Arc<Graph>,
        e: &End,
    ) -> Result<Arc<Graph>, Error> {
        let Some((tally, _)) = self.lock(wf).await? else {
            return Ok(graph);
        };
        let mut ahead = ReadAhead::new(tally);
        self.read_rows(wf, &[e.node], &mut ahead).await?;
        let running = ahead.run(|l| l.row(e.node))?.map(|r| r.state) == Some(NodeState::Running);
        if !running {
            return Ok(graph);
        }
        let (graph, step) = match NodeEnd::of(&graph, e.node, e.settled, e.result.as_deref()) {
            NodeEnd::Settle(settled) => {
                let step = self.settle(wf, &graph, tally, e.node, settled).await?;
                (graph, step)
            }
            NodeEnd::Refused(why) => {
                let node = node_param(e.node);
                self.execute(
                    "failing a workflow node",
                    &self.backend.inner.workflow_sql.node_error,
                    &[&wf, &node, &why],
                )
                .await?;
                let step = self
                    .settle(wf, &graph, tally, e.node, NodeResult::Failed)
                    .await?;
                (graph, step)
            }
            NodeEnd::Expand {
                graph: grown,
                added,
                stored,
            } => {
                let grown: Arc<Graph> = Arc::from(grown);
                self.add_expansion(wf, &stored, grown.clone()).await?;
                let first = ReadAhead::likely(&grown, e.node, &tally);
                let mut ahead = ReadAhead::new(tally);
                let step = self
                    .decide(wf, &mut ahead, &first, |l| {
                        ledger::expand(&grown, l, e.node, added.clone())
                    })
                    .await?;
                (grown, step)
            }
        };
        self.apply(wf, &graph, step).await?;
        Ok(graph)
    }
}

/// A node task's end, taken to settle its node.
struct End {
    wf: i64,
    node: usize,
    settled: NodeResult,
    result: Option<Vec<u8>>,
    error: Option<String>,
}
