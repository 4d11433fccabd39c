//! One workflow transaction: the workflow row locked, its node rows read
//! ahead of each decision ([`ReadAhead`]), what the decision changed written
//! back, and the nodes it made ready enqueued, all before the commit.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use conveyor_core::workflow::ledger::{self, NodeRow, Tally};
use conveyor_core::workflow::{
    composed_task, Graph, NodeOutput, NodeResult, NodeState, ReadAhead, Step, WorkflowOutcome,
};
use conveyor_core::{Error, NewTask, TaskId, Timestamp};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::backend::PostgresBackend;
use crate::error::{bad_data, db};
use crate::row::col;

/// Runs `$body` (an expression using `$at`, a [`Tx`]) in a new
/// transaction of `$backend` on a pooled connection, and ends it as
/// [`end`] does: `in_tx!(self, "what", |at| at.record(id, wf))`.
macro_rules! in_tx {
    ($backend:expr, $what:expr, |$at:ident| $body:expr) => {{
        let mut conn = $backend.conn($what).await?;
        let tx = conn
            .transaction()
            .await
            .map_err(|e| crate::error::db($what, e))?;
        let $at = crate::workflows::tx::Tx {
            tx: &tx,
            backend: $backend,
            now: $backend.inner.clock.now(),
        };
        let out = $body.await;
        crate::workflows::tx::end(tx, $what, out).await
    }};
}
pub(super) use in_tx;

/// Ends `tx` as `out` says: committed after a success, rolled back (and
/// the rollback awaited, so no lock outlives the call) after a failure.
pub(crate) async fn end<T>(
    tx: Transaction<'_>,
    what: &str,
    out: Result<T, Error>,
) -> Result<T, Error> {
    match out {
        Ok(v) => {
            tx.commit().await.map_err(|e| db(what, e))?;
            Ok(v)
        }
        Err(e) => {
            if let Err(r) = tx.rollback().await {
                tracing::debug!(error = %r, "postgres: rolling back after {what}");
            }
            Err(e)
        }
    }
}

/// The parameters of one statement.
pub(super) type Params<'p> = [&'p (dyn ToSql + Sync)];

/// An open transaction of the workflows part.
pub(super) struct Tx<'a> {
    pub tx: &'a Transaction<'a>,
    pub backend: &'a PostgresBackend,
    pub now: Timestamp,
}

/// A count column as the ledger holds it.
fn count(raw: i32, wf: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(raw).map_err(|_| bad_data(format!("workflow {wf} has {what} = {raw}")))
}

/// A node index as a column holds it.
pub(super) fn node_param(node: usize) -> i32 {
    i32::try_from(node).unwrap_or(i32::MAX)
}

/// A node column read back.
pub(super) fn node_of(raw: i32, wf: i64) -> Result<usize, Error> {
    usize::try_from(raw).map_err(|_| bad_data(format!("workflow {wf} has node {raw}")))
}

impl Tx<'_> {
    /// Runs `sql` (prepared once per connection) and returns its rows.
    pub async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, Error> {
        let stmt = self
            .tx
            .prepare_cached(sql)
            .await
            .map_err(|e| db(&format!("{what} (preparing)"), e))?;
        self.tx.query(&stmt, params).await.map_err(|e| db(what, e))
    }

    /// Runs `sql` and returns how many rows it changed.
    pub async fn execute(&self, what: &str, sql: &str, params: &Params<'_>) -> Result<u64, Error> {
        let stmt = self
            .tx
            .prepare_cached(sql)
            .await
            .map_err(|e| db(&format!("{what} (preparing)"), e))?;
        self.tx
            .execute(&stmt, params)
            .await
            .map_err(|e| db(what, e))
    }

    fn sql(&self) -> &crate::workflows::WorkflowStatements {
        &self.backend.inner.workflow_sql
    }

    /// Workflow `wf`'s graph (decoded once per process: right for every
    /// node it has, see [`Tx::fresh_graph`]).
    pub async fn graph(&self, wf: i64) -> Result<Option<Arc<Graph>>, Error> {
        let id = u64::try_from(wf).map_err(|_| bad_data(format!("workflow id {wf}")))?;
        if let Some(g) = self.backend.inner.graphs.get(id) {
            return Ok(Some(g));
        }
        self.fresh_graph(wf).await
    }

    /// Workflow `wf`'s graph as stored now: its declaration and every
    /// expansion made so far (another process may have made one since
    /// this one read it).
    pub async fn fresh_graph(&self, wf: i64) -> Result<Option<Arc<Graph>>, Error> {
        let id = u64::try_from(wf).map_err(|_| bad_data(format!("workflow id {wf}")))?;
        let rows = self
            .query("reading a workflow", &self.sql().spec, &[&wf])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let bytes: Vec<u8> = col(row, 0, "spec")?;
        let expansions: Vec<Vec<u8>> = self
            .query(
                "reading a workflow's expansions",
                &self.sql().expansions,
                &[&wf],
            )
            .await?
            .iter()
            .map(|r| col(r, 0, "spec"))
            .collect::<Result<_, Error>>()?;
        self.backend
            .inner
            .graphs
            .decode_grown(id, &bytes, expansions.iter().map(Vec::as_slice))
            .map(Some)
    }

    /// Stores workflow `wf`'s next expansion (`stored`) and keeps `graph`,
    /// the graph it made, as the workflow's.
    pub async fn add_expansion(
        &self,
        wf: i64,
        stored: &[u8],
        graph: Arc<Graph>,
    ) -> Result<(), Error> {
        self.execute(
            "storing a workflow's expansion",
            &self.sql().add_expansion,
            &[&wf, &stored],
        )
        .await?;
        let id = u64::try_from(wf).map_err(|_| bad_data(format!("workflow id {wf}")))?;
        self.backend.inner.graphs.put(id, graph);
        Ok(())
    }

    /// Locks workflow `wf`'s row and reads its tally and whether it was
    /// cancelled; `None` when it is gone (pruned).
    pub async fn lock(&self, wf: i64) -> Result<Option<(Tally, bool)>, Error> {
        let rows = self
            .query("locking a workflow", &self.sql().lock, &[&wf])
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let outcome: Option<i16> = col(r, 3, "outcome")?;
        let tally = Tally {
            body_left: count(col(r, 0, "body_left")?, wf, "body_left")?,
            left: count(col(r, 1, "nodes_left")?, wf, "nodes_left")?,
            failed: col(r, 2, "failed")?,
            outcome: WorkflowOutcome::from_code(outcome.map(i64::from)),
        };
        Ok(Some((tally, col(r, 4, "cancelled")?)))
    }

    /// Reads nodes `nodes` of workflow `wf` into `ahead`.
    pub async fn read_rows(
        &self,
        wf: i64,
        nodes: &[usize],
        ahead: &mut ReadAhead,
    ) -> Result<(), Error> {
        let nodes: Vec<i32> = nodes.iter().map(|&n| node_param(n)).collect();
        let rows = self
            .query("reading workflow nodes", &self.sql().rows, &[&wf, &nodes])
            .await?;
        for r in &rows {
            let state: i16 = col(r, 1, "state")?;
            ahead.insert(
                node_of(col(r, 0, "node")?, wf)?,
                NodeRow {
                    state: NodeState::from_code(i64::from(state), wf)?,
                    waiting_on: count(col(r, 2, "waiting_on")?, wf, "waiting_on")?,
                },
            );
        }
        Ok(())
    }

    /// Runs `decide` over workflow `wf`'s rows, reading `first` ahead and
    /// whatever else it asks for, then writes back what it changed.
    pub async fn decide<T>(
        &self,
        wf: i64,
        ahead: &mut ReadAhead,
        first: &[usize],
        mut decide: impl FnMut(&mut ReadAhead) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.read_rows(wf, first, ahead).await?;
        let out = loop {
            if let Some(out) = ahead.run(&mut decide)? {
                break out;
            }
            let missing = ahead.missing();
            self.read_rows(wf, &missing, ahead).await?;
            if let Some(&gone) = missing.iter().find(|&&n| !ahead.has(n)) {
                return Err(bad_data(format!(
                    "workflow {wf} has no row for node {gone}"
                )));
            }
        };
        self.write_back(wf, ahead).await?;
        Ok(out)
    }

    /// Writes back the rows and tally `ahead`'s last run changed.
    async fn write_back(&self, wf: i64, ahead: &ReadAhead) -> Result<(), Error> {
        // Rows an expansion added are inserted, the others updated.
        let mut changed: [(Vec<i32>, Vec<i16>, Vec<i32>); 2] = Default::default();
        for (node, row) in ahead.written_rows() {
            let (nodes, states, waits) = &mut changed[usize::from(ahead.is_added(node))];
            nodes.push(node_param(node));
            states.push(row.state.code());
            waits.push(i32::try_from(row.waiting_on).unwrap_or(i32::MAX));
        }
        let [(nodes, states, waits), (added, added_states, added_waits)] = &changed;
        if !added.is_empty() {
            self.execute(
                "adding workflow nodes",
                &self.sql().insert_nodes,
                &[&wf, added, added_states, added_waits],
            )
            .await?;
        }
        if !nodes.is_empty() {
            self.execute(
                "writing workflow nodes",
                &self.sql().write_rows,
                &[&wf, nodes, states, waits],
            )
            .await?;
        }
        if let Some(t) = ahead.written_tally() {
            let body = i32::try_from(t.body_left).unwrap_or(i32::MAX);
            let left = i32::try_from(t.left).unwrap_or(i32::MAX);
            let outcome = t.outcome.map(WorkflowOutcome::code);
            self.execute(
                "writing a workflow's tally",
                &self.sql().write_tally,
                &[&wf, &body, &left, &t.failed, &outcome],
            )
            .await?;
        }
        Ok(())
    }

    /// Settles node `node` of workflow `wf` (locked) as `result`, and
    /// applies what that decides; `ahead` holds the tally just locked.
    pub async fn settle(
        &self,
        wf: i64,
        graph: &Graph,
        tally: Tally,
        node: usize,
        result: NodeResult,
    ) -> Result<Step, Error> {
        let mut ahead = ReadAhead::new(tally);
        let first = ReadAhead::likely(graph, node, &tally);
        self.decide(wf, &mut ahead, &first, |l| {
            ledger::settle(graph, l, node, result)
        })
        .await
    }

    /// Applies `step`: ends the workflow when it says so, enqueues the nodes
    /// it made ready (their params composed from their dependencies'
    /// results, as one batch), and fails at once any whose task cannot be
    /// made, applying what that decides in turn. Returns the nodes enqueued
    /// and their tasks.
    pub async fn apply(
        &self,
        wf: i64,
        graph: &Graph,
        step: Step,
    ) -> Result<Vec<(usize, TaskId)>, Error> {
        let mut started = Vec::new();
        let mut steps = VecDeque::from([step]);
        while let Some(step) = steps.pop_front() {
            if step.ended.is_some() {
                let now = self.now.as_millis();
                self.execute("ending a workflow", &self.sql().end, &[&wf, &now])
                    .await?;
            }
            if step.enqueue.is_empty() {
                continue;
            }
            let outputs = self.outputs(wf, graph, &step.enqueue).await?;
            let mut ready: Vec<(usize, NewTask)> = Vec::with_capacity(step.enqueue.len());
            let mut unmade: Vec<(usize, String)> = Vec::new();
            for &node in &step.enqueue {
                let made = graph
                    .reads(node)
                    .into_iter()
                    .map(|dep| {
                        outputs.get(&dep).cloned().ok_or_else(|| {
                            bad_data(format!("workflow {wf} has no row for node {dep}"))
                        })
                    })
                    .collect::<Result<Vec<NodeOutput>, Error>>()
                    .and_then(|outs| composed_task(graph, node, &outs))
                    .and_then(|task| {
                        crate::enqueue::validate(std::slice::from_ref(&task))?;
                        self.backend.inner.value_limit.check_params(&task)?;
                        Ok(task)
                    });
                match made {
                    Ok(task) => ready.push((node, task)),
                    Err(e @ Error::Backend(_)) => return Err(e),
                    Err(e) => unmade.push((node, e.to_string())),
                }
            }
            started.extend(self.enqueue_nodes(wf, ready).await?);
            for (node, error) in unmade {
                let n = node_param(node);
                self.execute(
                    "failing a workflow node",
                    &self.sql().node_error,
                    &[&wf, &n, &error],
                )
                .await?;
                let Some((tally, _)) = self.lock(wf).await? else {
                    continue;
                };
                steps.push_back(
                    self.settle(wf, graph, tally, node, NodeResult::Failed)
                        .await?,
                );
            }
        }
        Ok(started)
    }

    /// The outputs of the dependencies of `nodes`, by node.
    async fn outputs(
        &self,
        wf: i64,
        graph: &Graph,
        nodes: &[usize],
    ) -> Result<HashMap<usize, NodeOutput>, Error> {
        let mut deps: Vec<i32> = nodes
            .iter()
            .flat_map(|&n| graph.reads(n).into_iter().map(node_param))
            .collect();
        if deps.is_empty() {
            return Ok(HashMap::new());
        }
        deps.sort_unstable();
        deps.dedup();
        let rows = self
            .query("reading node results", &self.sql().outputs, &[&wf, &deps])
            .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            let state: i16 = col(r, 1, "state")?;
            out.insert(
                node_of(col(r, 0, "node")?, wf)?,
                (
                    NodeState::from_code(i64::from(state), wf)?,
                    col(r, 2, "result")?,
                    col(r, 3, "error")?,
                ),
            );
        }
        Ok(out)
    }

    /// Enqueues the tasks of `ready` nodes as one batch in this
    /// transaction, marks them as workflow `wf`'s and records each node's
    /// task.
    async fn enqueue_nodes(
        &self,
        wf: i64,
        ready: Vec<(usize, NewTask)>,
    ) -> Result<Vec<(usize, TaskId)>, Error> {
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        let (nodes, tasks): (Vec<usize>, Vec<NewTask>) = ready.into_iter().unzip();
        let inner = &self.backend.inner;
        let statement = self
            .tx
            .prepare_cached(&inner.sql.enqueue)
            .await
            .map_err(|e| db("enqueueing workflow nodes (preparing)", e))?;
        let at = crate::enqueue::Target {
            client: self.tx.client(),
            statement: &statement,
            wakes: true,
            sql: &inner.sql,
            schema: &inner.schema,
            now: self.now,
        };
        let enqueued = crate::enqueue::enqueue(&at, &tasks).await?;
        let ids: Vec<i64> = enqueued
            .iter()
            .map(|e| i64::try_from(e.id.0).unwrap_or(i64::MAX))
            .collect();
        let params: Vec<i32> = nodes.iter().map(|&n| node_param(n)).collect();
        self.execute("marking node tasks", &self.sql().mark_tasks, &[&wf, &ids])
            .await?;
        self.execute(
            "recording node tasks",
            &self.sql().set_tasks,
            &[&wf, &params, &ids],
        )
        .await?;
        Ok(nodes
            .into_iter()
            .zip(enqueued.iter().map(|e| e.id))
            .collect())
    }
}
