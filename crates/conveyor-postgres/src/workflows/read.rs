//! Reading a workflow back, cancelling one, retrying its failed part, and
//! pruning ended ones.

use conveyor_core::workflow::{
    ledger, NodeRecord, NodeState, ReadAhead, Retried, WorkflowFilter, WorkflowId, WorkflowOutcome,
    WorkflowRecord, WorkflowState, WorkflowSummary,
};
use conveyor_core::{Error, Retention, Timestamp};

use super::tx::{in_tx, node_param, Tx};
use crate::backend::PostgresBackend;
use crate::error::{bad_data, db};
use crate::row::{col, task_id};

/// A workflow id as a column holds it, if any can.
fn param(id: WorkflowId) -> Option<i64> {
    i64::try_from(id.0).ok()
}

impl PostgresBackend {
    /// The body of `Workflows::workflow`.
    pub(crate) async fn read_workflow(
        &self,
        id: WorkflowId,
    ) -> Result<Option<WorkflowRecord>, Error> {
        let what = "reading a workflow";
        let Some(wf) = param(id) else {
            return Ok(None);
        };
        in_tx!(self, what, |at| at.record(id, wf))
    }

    /// The body of `Workflows::cancel_workflow`: every node not settled is
    /// cancelled, and the tasks of running ones, in one transaction.
    pub(crate) async fn cancel_whole(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        let what = "cancelling a workflow";
        let Some(wf) = param(id) else {
            return Ok(None);
        };
        in_tx!(self, what, |at| at.cancel(wf))
    }

    /// The body of `Workflows::retry_workflow`.
    pub(crate) async fn retry_whole(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        let what = "retrying a workflow";
        let Some(wf) = param(id) else {
            return Ok(None);
        };
        in_tx!(self, what, |at| at.retry(wf))
    }

    /// The body of `Workflows::list_workflows`.
    pub(crate) async fn list_workflows(
        &self,
        filter: &WorkflowFilter,
    ) -> Result<Vec<WorkflowSummary>, Error> {
        let what = "listing workflows";
        let before = filter
            .before
            .map_or(i64::MAX, |b| i64::try_from(b.0).unwrap_or(i64::MAX));
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let conn = self.conn(what).await?;
        let sql = self.inner.workflow_sql.list(filter.state);
        let stmt = Self::prepared(&conn, what, sql).await?;
        let rows = conn
            .query(&stmt, &[&before, &limit])
            .await
            .map_err(|e| db(what, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = col(r, 0, "id")?;
            let outcome: Option<i16> = col(r, 2, "outcome")?;
            let left: i32 = col(r, 5, "nodes_left")?;
            let nodes: i64 = col(r, 6, "nodes")?;
            let left = u32::try_from(left).unwrap_or(0);
            let summary = WorkflowSummary {
                id: WorkflowId(id.unsigned_abs()),
                state: WorkflowState::of(
                    col(r, 1, "cancelled")?,
                    left,
                    WorkflowOutcome::from_code(outcome.map(i64::from)),
                ),
                nodes: u32::try_from(nodes).unwrap_or(u32::MAX),
                left,
                created_at: Timestamp(col(r, 3, "created_at")?),
                ended_at: col::<Option<i64>>(r, 4, "ended_at")?.map(Timestamp),
            };
            if filter.admits(&summary) {
                out.push(summary);
            }
        }
        Ok(out)
    }

    /// Deletes the workflows that ended before their retention, with their
    /// nodes (see `Maintenance::prune`).
    pub(crate) async fn prune_workflows(&self, retention: Retention) -> Result<u64, Error> {
        let what = "pruning workflows";
        let now = self.inner.clock.now();
        let finished = now.minus(retention.finished).as_millis();
        let dead = now.minus(retention.dead).as_millis();
        let later = finished.max(dead);
        let conn = self.conn(what).await?;
        let stmt = Self::prepared(&conn, what, &self.inner.workflow_sql.prune).await?;
        conn.execute(&stmt, &[&finished, &dead, &later])
            .await
            .map_err(|e| db(what, e))
    }
}

impl Tx<'_> {
    /// Workflow `wf` (`id`) with every node, or `None`.
    async fn record(&self, id: WorkflowId, wf: i64) -> Result<Option<WorkflowRecord>, Error> {
        let what = "reading a workflow";
        let at = self;
        let sql = &self.backend.inner.workflow_sql;
        let head = at.query(what, &sql.head, &[&wf]).await?;
        let Some(h) = head.first() else {
            return Ok(None);
        };
        let Some(mut graph) = at.graph(wf).await? else {
            return Ok(None);
        };
        let left: i32 = col(h, 4, "nodes_left")?;
        let outcome: Option<i16> = col(h, 1, "outcome")?;
        let state = WorkflowState::of(
            col(h, 0, "cancelled")?,
            u32::try_from(left).unwrap_or(0),
            WorkflowOutcome::from_code(outcome.map(i64::from)),
        );
        let rows = at.query(what, &sql.all_rows, &[&wf]).await?;
        if rows.len() != graph.len() {
            let Some(fresh) = at.fresh_graph(wf).await? else {
                return Ok(None);
            };
            graph = fresh;
        }
        if rows.len() != graph.len() {
            return Err(bad_data(format!(
                "workflow {wf} has {} node rows for {} nodes",
                rows.len(),
                graph.len()
            )));
        }
        let mut nodes = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let code: i16 = col(r, 0, "state")?;
            let task: Option<i64> = col(r, 1, "task")?;
            nodes.push(NodeRecord::of(
                &graph,
                i,
                NodeState::from_code(i64::from(code), wf)?,
                task.map(task_id).transpose()?,
            ));
        }
        Ok(Some(WorkflowRecord {
            id,
            state,
            nodes,
            created_at: Timestamp(col(h, 2, "created_at")?),
            ended_at: col::<Option<i64>>(h, 3, "ended_at")?.map(Timestamp),
        }))
    }

    /// Cancels workflow `wf`: how many nodes, or `None` when it is gone.
    async fn cancel(&self, wf: i64) -> Result<Option<u64>, Error> {
        let what = "cancelling a workflow";
        let at = self;
        let inner = &self.backend.inner;
        let sql = &inner.workflow_sql;
        let Some((tally, _)) = at.lock(wf).await? else {
            return Ok(None);
        };
        let Some(graph) = at.fresh_graph(wf).await? else {
            return Ok(None);
        };
        let every: Vec<usize> = (0..graph.len()).collect();
        let mut ahead = ReadAhead::new(tally);
        let (cancelled, _) = at
            .decide(wf, &mut ahead, &every, |l| ledger::cancel_all(&graph, l))
            .await?;
        if cancelled.is_empty() {
            return Ok(Some(0));
        }
        let now = at.now.as_millis();
        at.execute(what, &sql.cancelled, &[&wf, &now]).await?;
        // The tasks of the nodes just cancelled that have one (the running
        // ones): cancelled with them. The cancel statement records their
        // ends for settling; their nodes are settled already, so the
        // records go in the same transaction.
        let rows = at.query(what, &sql.all_rows, &[&wf]).await?;
        let finished = inner.schema.finished_channel();
        let mut tasks: Vec<i64> = Vec::new();
        for &node in &cancelled {
            let Some(r) = rows.get(node) else { continue };
            let Some(task) = col::<Option<i64>>(r, 1, "task")? else {
                continue;
            };
            at.query(what, &inner.sql.cancel, &[&task, &now, &finished])
                .await?;
            tasks.push(task);
        }
        at.execute(what, &sql.forget_ended, &[&tasks]).await?;
        Ok(Some(cancelled.len() as u64))
    }

    /// Retries workflow `wf`'s failed part (see `ledger::retry_failed`):
    /// what it put back, or `None` when it is gone.
    async fn retry(&self, wf: i64) -> Result<Option<Retried>, Error> {
        let what = "retrying a workflow";
        let sql = &self.backend.inner.workflow_sql;
        let Some((tally, _)) = self.lock(wf).await? else {
            return Ok(None);
        };
        let Some(graph) = self.fresh_graph(wf).await? else {
            return Ok(None);
        };
        let every: Vec<usize> = (0..graph.len()).collect();
        let mut ahead = ReadAhead::new(tally);
        let retried = self
            .decide(wf, &mut ahead, &every, |l| ledger::retry_failed(&graph, l))
            .await?;
        let Some((nodes, step)) = retried else {
            return Ok(Some(Retried::Running));
        };
        if nodes.is_empty() {
            return Ok(Some(Retried::Nodes(0)));
        }
        let put_back: Vec<i32> = nodes.iter().map(|&n| node_param(n)).collect();
        self.execute(what, &sql.retried, &[&wf]).await?;
        self.execute(what, &sql.forget_nodes, &[&wf, &put_back])
            .await?;
        self.apply(wf, &graph, step).await?;
        Ok(Some(Retried::Nodes(nodes.len() as u64)))
    }
}
