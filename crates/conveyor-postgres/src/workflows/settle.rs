//! Settling the nodes whose tasks ended. The statements that end tasks
//! record each node task that reaches a final state in `workflow_settles`
//! (a data-modifying CTE of the same statement); whoever ended it (a finish, a cancel,
//! lease recovery) takes those rows right after and settles each node in one
//! transaction with the rows' removal, so a node is settled once however
//! many times its task's end is heard, and a crash between the two leaves
//! the rows for the next taker (maintenance takes any that are left).

use conveyor_core::workflow::NodeResult;
use conveyor_core::{Error, TaskId};

use super::tx::{in_tx, node_of, Tx};
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
        // the same order.
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
            let (Some(graph), Some((tally, _))) = (at.graph(wf).await?, at.lock(wf).await?) else {
                continue;
            };
            let n = super::tx::node_param(node);
            let result: Option<Vec<u8>> = col(&r, 3, "result")?;
            let error: Option<String> = match code {
                None => Some("the node's task record is gone".to_string()),
                Some(_) => col(&r, 4, "error")?,
            };
            at.execute(what, &sql.keep_output, &[&wf, &n, &result, &error])
                .await?;
            let step = at.settle(wf, &graph, tally, node, settled).await?;
            at.apply(wf, &graph, step).await?;
        }
        Ok(ids.len() as u64)
    }
}
