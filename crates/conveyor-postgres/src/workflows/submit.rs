//! Storing a workflow: the declaration, its node rows and the tasks of the
//! nodes that wait for nothing, in one transaction.

use std::sync::Arc;

use conveyor_core::workflow::{
    stored, Graph, Progress, Step, Submitted, WorkflowId, WorkflowOutcome, WorkflowSpec,
};
use conveyor_core::{Error, TaskId};

use super::tx::{in_tx, node_param, Tx};
use crate::backend::PostgresBackend;
use crate::error::bad_data;
use crate::row::col;

/// A workflow of this many nodes has the node table analyzed once it is
/// stored.
const ANALYZE_AFTER: usize = 1_000;

impl PostgresBackend {
    /// Has PostgreSQL gather the node table's statistics again, in the
    /// background: until it knows a large workflow's rows are there, it
    /// plans their lookups as if the workflow had a few (see the module of
    /// the statements), and autovacuum takes a minute or more to look. A
    /// failure is logged: the statistics are an optimisation.
    fn analyze_nodes(&self) {
        let backend = self.clone();
        tokio::spawn(async move {
            let what = "analyzing the workflow node table";
            let analyzed = async {
                let conn = backend.conn(what).await?;
                let table = backend.inner.schema.table("workflow_nodes");
                conn.batch_execute(&format!("ANALYZE {table}"))
                    .await
                    .map_err(|e| crate::error::db(what, e))
            };
            if let Err(e) = analyzed.await {
                tracing::debug!(error = %e, "postgres: {what}");
            }
        });
    }

    /// The body of `Workflows::submit`.
    pub(crate) async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        let what = "submitting a workflow";
        let stored = stored::encode(&spec)?;
        let graph = Arc::new(spec.validate()?);
        for node in graph.nodes() {
            crate::enqueue::validate(std::slice::from_ref(&node.task))?;
            self.inner.value_limit.check_params(&node.task)?;
        }
        let (progress, step) = Progress::start(&graph);
        let (id, started) = in_tx!(self, what, |at| at.store(
            stored,
            graph.clone(),
            progress,
            step
        ))?;
        if graph.len() >= ANALYZE_AFTER {
            self.analyze_nodes();
        }
        Ok(Submitted {
            id: WorkflowId(id),
            started: started
                .into_iter()
                .map(|(node, task)| (graph.nodes()[node].name.clone(), task))
                .collect(),
        })
    }
}

impl Tx<'_> {
    /// Stores a workflow started in memory (`progress`, `step`) and applies
    /// its first step: its id and the tasks enqueued.
    async fn store(
        &self,
        stored: Vec<u8>,
        graph: Arc<Graph>,
        progress: Progress,
        step: Step,
    ) -> Result<(u64, Vec<(usize, TaskId)>), Error> {
        let what = "submitting a workflow";
        let at = self;
        let tally = progress.counts();
        let sql = &self.backend.inner.workflow_sql;
        let body = i32::try_from(tally.body_left).unwrap_or(i32::MAX);
        let left = i32::try_from(tally.left).unwrap_or(i32::MAX);
        let now = at.now.as_millis();
        let outcome = tally.outcome.map(WorkflowOutcome::code);
        let row = at
            .query(what, &sql.insert, &[&stored, &body, &left, &now, &outcome])
            .await?;
        let wf: i64 = col(
            row.first().ok_or_else(|| bad_data("no workflow id"))?,
            0,
            "id",
        )?;
        let (mut nodes, mut states, mut waits) = (Vec::new(), Vec::new(), Vec::new());
        for (node, r) in progress.rows().iter().enumerate() {
            nodes.push(node_param(node));
            states.push(r.state.code());
            waits.push(i32::try_from(r.waiting_on).unwrap_or(i32::MAX));
        }
        at.execute(what, &sql.insert_nodes, &[&wf, &nodes, &states, &waits])
            .await?;
        let id = u64::try_from(wf).map_err(|_| bad_data(format!("a workflow got id {wf}")))?;
        self.backend.inner.graphs.put(id, graph.clone());
        let started = at.apply(wf, &graph, step).await?;
        Ok((id, started))
    }
}
