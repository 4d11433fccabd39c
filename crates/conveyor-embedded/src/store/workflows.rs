//! Workflows in the file: the declaration and tally in `workflows`, one row
//! per node in `workflow_nodes`, moved forward inside the transaction of the
//! operation that ends a node's task (see [`Store::settling`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use conveyor_core::workflow::entries::TaskOutput;
use conveyor_core::workflow::ledger::{self, Ledger, NodeRow, Tally};
use conveyor_core::workflow::{
    composed_task, is_expansion, stored, Graph, NodeEnd, NodeRecord, NodeResult, NodeState,
    Progress, Retried, Step, Submitted, WorkflowId, WorkflowOutcome, WorkflowRecord, WorkflowSpec,
    WorkflowState,
};
use conveyor_core::{Error, TaskId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use super::Store;
use crate::error::db_err;
use crate::row::{id_param, state_from_code, task_id};

pub(super) fn count(n: i64, wf: i64) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::backend_other(format!("workflow {wf} has a count of {n}")))
}

/// A workflow's row as [`Store::workflow`] reads it: cancelled, outcome,
/// created at, ended at, nodes left.
type Head = (bool, Option<i64>, i64, Option<i64>, i64);

/// One workflow's rows, read inside the open transaction, their changes
/// kept in `behind` until [`Behind::flush`] writes them.
struct Rows<'a> {
    conn: &'a Connection,
    wf: i64,
    behind: &'a mut Behind,
}

/// The node rows and tallies the settles of one request changed, written
/// once at its end rather than at each settle: a chord's body counted down
/// by a batch of headers is written once, and so is its workflow's tally.
#[derive(Default)]
struct Behind {
    rows: HashMap<(i64, usize), NodeRow>,
    outputs: HashMap<(i64, usize), TaskOutput>,
    tallies: HashMap<i64, Tally>,
}

impl Behind {
    /// Writes every change kept, and forgets them.
    fn flush(&mut self, conn: &Connection) -> Result<(), Error> {
        for ((wf, node), row) in self.rows.drain() {
            let state = i64::from(row.state.code());
            let waiting = i64::from(row.waiting_on);
            match self.outputs.remove(&(wf, node)) {
                Some((result, error)) => conn
                    .prepare_cached(
                        "UPDATE workflow_nodes SET state = ?3, waiting_on = ?4, result = ?5, \
                         error = ?6 WHERE workflow = ?1 AND node = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(params![wf, node as i64, state, waiting, result, error])
                    }),
                None => conn
                    .prepare_cached(
                        "UPDATE workflow_nodes SET state = ?3, waiting_on = ?4 \
                         WHERE workflow = ?1 AND node = ?2",
                    )
                    .and_then(|mut s| s.execute(params![wf, node as i64, state, waiting])),
            }
            .map_err(db_err)?;
        }
        for ((wf, node), (result, error)) in self.outputs.drain() {
            conn.prepare_cached(
                "UPDATE workflow_nodes SET result = ?3, error = ?4 \
                 WHERE workflow = ?1 AND node = ?2",
            )
            .and_then(|mut s| s.execute(params![wf, node as i64, result, error]))
            .map_err(db_err)?;
        }
        for (wf, tally) in self.tallies.drain() {
            let outcome = tally.outcome.map(|o| i64::from(o.code()));
            conn.prepare_cached(
                "UPDATE workflows SET body_left = ?2, nodes_left = ?3, failed = ?4, outcome = ?5 \
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    wf,
                    i64::from(tally.body_left),
                    i64::from(tally.left),
                    tally.failed,
                    outcome
                ])
            })
            .map_err(db_err)?;
        }
        Ok(())
    }
}

impl Ledger for Rows<'_> {
    fn row(&mut self, node: usize) -> Result<NodeRow, Error> {
        if let Some(row) = self.behind.rows.get(&(self.wf, node)) {
            return Ok(*row);
        }
        let (state, waiting): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT state, waiting_on FROM workflow_nodes WHERE workflow = ?1 AND node = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![self.wf, node as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .map_err(db_err)?;
        Ok(NodeRow {
            state: NodeState::from_code(state, self.wf)?,
            waiting_on: count(waiting, self.wf)?,
        })
    }

    fn set_row(&mut self, node: usize, row: NodeRow) -> Result<(), Error> {
        self.behind.rows.insert((self.wf, node), row);
        Ok(())
    }

    fn add_row(&mut self, node: usize, row: NodeRow) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO workflow_nodes (workflow, node, state, waiting_on) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    self.wf,
                    node as i64,
                    i64::from(row.state.code()),
                    i64::from(row.waiting_on)
                ])
            })
            .map_err(db_err)?;
        Ok(())
    }

    fn tally(&mut self) -> Result<Tally, Error> {
        if let Some(tally) = self.behind.tallies.get(&self.wf) {
            return Ok(*tally);
        }
        let (body, left, failed, outcome): (i64, i64, bool, Option<i64>) = self
            .conn
            .prepare_cached(
                "SELECT body_left, nodes_left, failed, outcome FROM workflows WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([self.wf], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
            })
            .map_err(db_err)?;
        Ok(Tally {
            body_left: count(body, self.wf)?,
            left: count(left, self.wf)?,
            failed,
            outcome: WorkflowOutcome::from_code(outcome),
        })
    }

    fn set_tally(&mut self, tally: Tally) -> Result<(), Error> {
        self.behind.tallies.insert(self.wf, tally);
        Ok(())
    }
}

impl Store {
    /// Runs `op` (a finish, a cancel, a lease recovery, a reservation), then
    /// settles, in the same transaction, the workflow nodes of the tasks it
    /// brought to a final state.
    pub(crate) fn settling<T>(
        &mut self,
        op: impl FnOnce(&mut Store) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let from = self.finished.len();
        let out = op(self)?;
        if self.finished.len() > from {
            let ended: Vec<TaskId> = self.finished[from..].to_vec();
            self.settle_nodes_of(&ended)?;
        }
        Ok(out)
    }

    /// Stores `spec` and enqueues the nodes that wait for nothing.
    pub(crate) fn submit_workflow(&mut self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        let stored = stored::encode(&spec)?;
        let graph = Arc::new(spec.validate()?);
        // The start decided in memory: each row is written once, as it
        // stands after the start.
        let (progress, step) = Progress::start(&graph);
        let tally = progress.counts();
        let now = self.now();
        self.conn
            .prepare_cached(
                "INSERT INTO workflows (spec, body_left, nodes_left, failed, outcome, created_at) \
                 VALUES (x'', ?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    i64::from(tally.body_left),
                    i64::from(tally.left),
                    tally.failed,
                    tally.outcome.map(|o| i64::from(o.code())),
                    now.0
                ])
            })
            .map_err(db_err)?;
        let wf = self.conn.last_insert_rowid();
        // The declaration in a table of its own: in the workflow's row, a
        // large one would be read and rewritten with every tally.
        self.conn
            .prepare_cached("INSERT INTO workflow_specs (id, spec) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![wf, stored]))
            .map_err(db_err)?;
        {
            let mut insert = self
                .conn
                .prepare_cached(
                    "INSERT INTO workflow_nodes (workflow, node, state, waiting_on) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_err)?;
            for (node, row) in progress.rows().iter().enumerate() {
                insert
                    .execute(params![
                        wf,
                        node as i64,
                        i64::from(row.state.code()),
                        i64::from(row.waiting_on)
                    ])
                    .map_err(db_err)?;
            }
        }
        let first: HashSet<usize> = step.enqueue.iter().copied().collect();
        self.graphs.put(wf as u64, graph.clone());
        let made = self.apply_step(wf, &graph, step)?;
        let started = made
            .into_iter()
            .filter(|(node, _)| first.contains(node))
            .map(|(node, task)| (graph.nodes()[node].name.clone(), task))
            .collect();
        let id = u64::try_from(wf)
            .map_err(|_| Error::backend_other(format!("a workflow got id {wf}")))?;
        Ok(Submitted {
            id: WorkflowId(id),
            started,
        })
    }

    /// Settles the nodes of tasks that reached a final state.
    fn settle_nodes_of(&mut self, ended: &[TaskId]) -> Result<(), Error> {
        let running: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM workflows WHERE ended_at IS NULL)")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_err)?;
        if !running {
            return Ok(());
        }
        let mut behind = Behind::default();
        let mut steps = Vec::new();
        for &id in ended {
            let Some(raw) = id_param(id) else { continue };
            let found: Option<(i64, i64, i64, TaskOutput)> = self
                .conn
                .prepare_cached(
                    "SELECT n.workflow, n.node, t.state, t.result, t.error \
                     FROM workflow_nodes n JOIN tasks t ON t.id = n.task WHERE n.task = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([raw], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, (r.get(3)?, r.get(4)?)))
                    })
                    .optional()
                })
                .map_err(db_err)?;
            let Some((wf, node, code, (result, error))) = found else {
                continue;
            };
            let Some(settled) = NodeResult::of(state_from_code(code, raw)?) else {
                continue;
            };
            let node = usize::try_from(node)
                .map_err(|_| Error::backend_other(format!("workflow {wf} has node {node}")))?;
            let mut graph = self.graph(wf)?;
            if node >= graph.len() || result.as_deref().is_some_and(is_expansion) {
                // A node this process has not seen added, or an expansion
                // to decide over every expansion made so far.
                graph = self.fresh_graph(wf)?;
            }
            let mut rows = Rows {
                conn: &self.conn,
                wf,
                behind: &mut behind,
            };
            if rows.row(node)?.state != NodeState::Running {
                continue;
            }
            let mut error = error;
            let step = match NodeEnd::of(&graph, node, settled, result.as_deref()) {
                // An expanded node's task's end heard again: nothing to
                // settle, nothing to keep.
                NodeEnd::Settle(_) if graph.is_expanded(node) => continue,
                NodeEnd::Settle(settled) => ledger::settle(&graph, &mut rows, node, settled)?,
                NodeEnd::Expand {
                    graph: grown,
                    added,
                    stored,
                } => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO workflow_expansions (workflow, seq, spec) VALUES \
                             (?1, (SELECT COUNT(*) FROM workflow_expansions WHERE workflow = ?1), \
                             ?2)",
                        )
                        .and_then(|mut s| s.execute(params![wf, stored]))
                        .map_err(db_err)?;
                    graph = Arc::from(grown);
                    self.graphs.put(wf as u64, graph.clone());
                    let mut rows = Rows {
                        conn: &self.conn,
                        wf,
                        behind: &mut behind,
                    };
                    ledger::expand(&graph, &mut rows, node, added)?
                }
                NodeEnd::Refused(why) => {
                    error = Some(why);
                    ledger::settle(&graph, &mut rows, node, NodeResult::Failed)?
                }
            };
            // An expanded node's output is its expansion's: the declaration
            // is not kept in its row, which each added node's settle
            // rewrites.
            let kept = result.filter(|_| !graph.is_expanded(node));
            behind.outputs.insert((wf, node), (kept, error));
            steps.push((wf, graph, step));
        }
        // Written before the steps are applied: a node they enqueue reads
        // its dependencies' results from their rows.
        behind.flush(&self.conn)?;
        for (wf, graph, step) in steps {
            self.apply_step(wf, &graph, step)?;
        }
        Ok(())
    }

    /// Enqueues the nodes a step made ready, their params composed from
    /// their dependencies' results, in one batch per step; a node whose
    /// params cannot be composed fails at once, and what that decides is
    /// applied in turn. Returns each node enqueued with its task.
    fn apply_step(
        &mut self,
        wf: i64,
        graph: &Graph,
        step: Step,
    ) -> Result<Vec<(usize, TaskId)>, Error> {
        let mut made = Vec::new();
        let mut steps = VecDeque::from([step]);
        while let Some(step) = steps.pop_front() {
            if step.ended.is_some() {
                self.conn
                    .prepare_cached("UPDATE workflows SET ended_at = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![wf, self.now().0]))
                    .map_err(db_err)?;
            }
            let mut ready = Vec::with_capacity(step.enqueue.len());
            let mut tasks = Vec::with_capacity(step.enqueue.len());
            for node in step.enqueue {
                match self.composed_task(wf, graph, node) {
                    Ok(task) => {
                        ready.push(node);
                        tasks.push(task);
                    }
                    Err(e) => {
                        self.conn
                            .prepare_cached(
                                "UPDATE workflow_nodes SET error = ?3 \
                                 WHERE workflow = ?1 AND node = ?2",
                            )
                            .and_then(|mut s| s.execute(params![wf, node as i64, e.to_string()]))
                            .map_err(db_err)?;
                        let mut behind = Behind::default();
                        let mut rows = Rows {
                            conn: &self.conn,
                            wf,
                            behind: &mut behind,
                        };
                        steps.push_back(ledger::settle(
                            graph,
                            &mut rows,
                            node,
                            NodeResult::Failed,
                        )?);
                        behind.flush(&self.conn)?;
                    }
                }
            }
            if tasks.is_empty() {
                continue;
            }
            let enqueued = self.enqueue_many(tasks)?;
            let mut link = self
                .conn
                .prepare_cached(
                    "UPDATE workflow_nodes SET task = ?3 WHERE workflow = ?1 AND node = ?2",
                )
                .map_err(db_err)?;
            for (node, enqueued) in ready.into_iter().zip(enqueued) {
                let task = id_param(enqueued.id).unwrap_or(i64::MAX);
                link.execute(params![wf, node as i64, task])
                    .map_err(db_err)?;
                made.push((node, enqueued.id));
            }
        }
        Ok(made)
    }

    /// Node `node`'s task, its params composed from its dependencies.
    fn composed_task(
        &mut self,
        wf: i64,
        graph: &Graph,
        node: usize,
    ) -> Result<conveyor_core::NewTask, Error> {
        let mut outputs = Vec::new();
        {
            let mut read = self
                .conn
                .prepare_cached(
                    "SELECT state, result, error FROM workflow_nodes \
                     WHERE workflow = ?1 AND node = ?2",
                )
                .map_err(db_err)?;
            for dep in graph.reads(node) {
                let (code, result, error): (i64, Option<Vec<u8>>, Option<String>) = read
                    .query_row(params![wf, dep as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(db_err)?;
                outputs.push((NodeState::from_code(code, wf)?, result, error));
            }
        }
        composed_task(graph, node, &outputs)
    }

    /// The task of node `node`, once enqueued.
    fn node_task(&mut self, wf: i64, node: usize) -> Result<Option<TaskId>, Error> {
        let task: Option<i64> = self
            .conn
            .prepare_cached("SELECT task FROM workflow_nodes WHERE workflow = ?1 AND node = ?2")
            .and_then(|mut s| s.query_row(params![wf, node as i64], |r| r.get(0)))
            .map_err(db_err)?;
        task.map(task_id).transpose()
    }

    /// Workflow `wf`'s graph, read back once per process (right for every
    /// node it has: see [`Store::fresh_graph`]).
    fn graph(&mut self, wf: i64) -> Result<Arc<Graph>, Error> {
        if let Some(g) = self.graphs.get(wf as u64) {
            return Ok(g);
        }
        self.fresh_graph(wf)
    }

    /// Workflow `wf`'s graph as stored now: its declaration and every
    /// expansion made so far (another process may have made one since
    /// this one read it).
    fn fresh_graph(&mut self, wf: i64) -> Result<Arc<Graph>, Error> {
        let bytes: Vec<u8> = self
            .conn
            .prepare_cached("SELECT spec FROM workflow_specs WHERE id = ?1")
            .and_then(|mut s| s.query_row([wf], |r| r.get(0)))
            .map_err(db_err)?;
        let expansions: Vec<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT spec FROM workflow_expansions WHERE workflow = ?1 ORDER BY seq")
            .and_then(|mut s| {
                s.query_map([wf], |r| r.get(0))
                    .and_then(|rows| rows.collect())
            })
            .map_err(db_err)?;
        self.graphs
            .decode_grown(wf as u64, &bytes, expansions.iter().map(Vec::as_slice))
    }

    /// Deletes the workflows that ended before their retention, with their
    /// nodes: a succeeded one before `finished_before`, a failed or
    /// cancelled one (kept like a dead task) before `dead_before`.
    pub(crate) fn prune_workflows(
        &mut self,
        finished_before: Timestamp,
        dead_before: Timestamp,
    ) -> Result<(), Error> {
        // Bounded by the later cutoff, so the scan walks `workflows_ended`.
        const GONE: &str = "SELECT id FROM workflows WHERE ended_at IS NOT NULL \
             AND ended_at < ?3 AND ( \
             (cancelled = 0 AND outcome = 0 AND ended_at < ?1) \
             OR ((cancelled = 1 OR outcome IS NOT 0) AND ended_at < ?2))";
        let later = finished_before.max(dead_before);
        for text in [
            format!("DELETE FROM workflow_nodes WHERE workflow IN ({GONE})"),
            format!("DELETE FROM workflow_specs WHERE id IN ({GONE})"),
            format!("DELETE FROM workflow_expansions WHERE workflow IN ({GONE})"),
            format!("DELETE FROM workflows WHERE id IN ({GONE})"),
        ] {
            self.conn
                .prepare_cached(&text)
                .and_then(|mut s| s.execute(params![finished_before.0, dead_before.0, later.0]))
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Workflow `id` with every node, or `None`.
    pub(crate) fn workflow(&mut self, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error> {
        let Ok(wf) = i64::try_from(id.0) else {
            return Ok(None);
        };
        let head: Option<Head> = self
            .conn
            .prepare_cached(
                "SELECT cancelled, outcome, created_at, ended_at, nodes_left \
                 FROM workflows WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([wf], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .map_err(db_err)?;
        let Some((cancelled, outcome, created_at, ended_at, left)) = head else {
            return Ok(None);
        };
        let mut graph = self.graph(wf)?;
        let rows: Vec<(i64, Option<i64>)> = self
            .conn
            .prepare_cached(
                "SELECT state, task FROM workflow_nodes WHERE workflow = ?1 ORDER BY node",
            )
            .and_then(|mut s| {
                s.query_map([wf], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(db_err)?;
        if rows.len() != graph.len() {
            graph = self.fresh_graph(wf)?;
        }
        if rows.len() != graph.len() {
            return Err(Error::backend_other(format!(
                "workflow {wf} has {} node rows for {} nodes",
                rows.len(),
                graph.len()
            )));
        }
        let mut nodes = Vec::with_capacity(rows.len());
        for (i, (code, task)) in rows.into_iter().enumerate() {
            let task = task.map(task_id).transpose()?;
            nodes.push(NodeRecord::of(
                &graph,
                i,
                NodeState::from_code(code, wf)?,
                task,
            ));
        }
        let state = WorkflowState::of(
            cancelled,
            count(left, wf)?,
            WorkflowOutcome::from_code(outcome),
        );
        Ok(Some(WorkflowRecord {
            id,
            state,
            nodes,
            created_at: Timestamp(created_at),
            ended_at: ended_at.map(Timestamp),
        }))
    }

    /// Cancels every node of workflow `id` that has not settled, and the
    /// tasks of its running nodes; `None` when there is no such workflow.
    pub(crate) fn cancel_workflow(&mut self, id: WorkflowId) -> Result<Option<u64>, Error> {
        let Ok(wf) = i64::try_from(id.0) else {
            return Ok(None);
        };
        if !self.workflow_exists(wf)? {
            return Ok(None);
        }
        let graph = self.fresh_graph(wf)?;
        let mut behind = Behind::default();
        let (nodes, _) = ledger::cancel_all(
            &graph,
            &mut Rows {
                conn: &self.conn,
                wf,
                behind: &mut behind,
            },
        )?;
        behind.flush(&self.conn)?;
        if nodes.is_empty() {
            return Ok(Some(0));
        }
        self.conn
            .prepare_cached("UPDATE workflows SET cancelled = 1, ended_at = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![wf, self.now().0]))
            .map_err(db_err)?;
        for &node in &nodes {
            if let Some(task) = self.node_task(wf, node)? {
                self.cancel(task)?;
            }
        }
        Ok(Some(nodes.len() as u64))
    }

    /// Puts the failed part of the ended workflow `id` back to run (see
    /// [`ledger::retry_failed`]): the nodes put back forget their task and
    /// result, and the ready ones are enqueued; `None` when there is no
    /// such workflow.
    pub(crate) fn retry_workflow(&mut self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        let Ok(wf) = i64::try_from(id.0) else {
            return Ok(None);
        };
        if !self.workflow_exists(wf)? {
            return Ok(None);
        }
        let graph = self.fresh_graph(wf)?;
        let mut behind = Behind::default();
        let retried = ledger::retry_failed(
            &graph,
            &mut Rows {
                conn: &self.conn,
                wf,
                behind: &mut behind,
            },
        )?;
        behind.flush(&self.conn)?;
        let Some((nodes, step)) = retried else {
            return Ok(Some(Retried::Running));
        };
        if nodes.is_empty() {
            return Ok(Some(Retried::Nodes(0)));
        }
        self.conn
            .prepare_cached("UPDATE workflows SET cancelled = 0, ended_at = NULL WHERE id = ?1")
            .and_then(|mut s| s.execute([wf]))
            .map_err(db_err)?;
        for &node in &nodes {
            self.conn
                .prepare_cached(
                    "UPDATE workflow_nodes SET task = NULL, result = NULL, error = NULL \
                     WHERE workflow = ?1 AND node = ?2",
                )
                .and_then(|mut s| s.execute(params![wf, node as i64]))
                .map_err(db_err)?;
        }
        self.apply_step(wf, &graph, step)?;
        Ok(Some(Retried::Nodes(nodes.len() as u64)))
    }

    /// Whether workflow `wf` is stored.
    fn workflow_exists(&mut self, wf: i64) -> Result<bool, Error> {
        self.conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM workflows WHERE id = ?1)")
            .and_then(|mut s| s.query_row([wf], |r| r.get(0)))
            .map_err(db_err)
    }
}
