//! Settling the nodes whose tasks ended: the scripts that end tasks record
//! each workflow node's task among the namespace's ended node tasks;
//! whoever ended it settles it right after (and maintenance any left), by
//! reading the workflow at a version, running the ledger and writing back
//! if the version still holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use conveyor_core::workflow::ledger::{self, Ledger, NodeRow};
use conveyor_core::workflow::{
    composed_task, is_expansion, Graph, NodeEnd, NodeOutput, NodeResult, NodeState, ReadAhead, Step,
};
use conveyor_core::{Error, NewTask, TaskState};

use super::codec::{self, field};
use super::view::Change;
use crate::reply::{self, bad, redis_error};
use crate::scripts::Op;
use crate::RedisBackend;

/// Ended node tasks read per round from the set of ended ones.
const BATCH: usize = 200;

/// How many times a settle reads a workflow again because another process
/// changed it between the read and the write, before it gives up (and
/// maintenance settles the node later).
const TRIES: usize = 1_000;

/// A node task's end, as its task record tells it.
struct End {
    task: u64,
    node: usize,
    result: NodeResult,
    /// Its result and error, kept with the workflow.
    result_bytes: Option<Vec<u8>>,
    error: Option<String>,
}

impl End {
    /// Whether its result asks for an expansion.
    fn expands(&self) -> bool {
        self.result == NodeResult::Succeeded
            && self.result_bytes.as_deref().is_some_and(is_expansion)
    }
}

/// What one settle decided: the step, the graph grown by the expansions it
/// made (`None`: none), those expansions as stored, and the nodes whose
/// expansion was refused, with why.
type Decided = (Step, Option<Graph>, Vec<Vec<u8>>, HashMap<usize, String>);

/// Settles `ends` over `l`, and the `unmade` nodes as failed: an end that
/// asks for an expansion (of a node still running) grows the graph the
/// ends after it are decided over.
fn decide_ends(
    graph: &Graph,
    l: &mut ReadAhead,
    ends: &[End],
    unmade: &[(usize, String)],
) -> Result<Decided, Error> {
    let mut grown: Option<Graph> = None;
    let mut stored = Vec::new();
    let mut refused = HashMap::new();
    let mut all = Step::default();
    for e in ends {
        let g = grown.as_ref().unwrap_or(graph);
        if !e.expands() || l.row(e.node)?.state != NodeState::Running {
            all.merge(ledger::settle(g, l, e.node, e.result)?);
            continue;
        }
        match NodeEnd::of(g, e.node, e.result, e.result_bytes.as_deref()) {
            NodeEnd::Settle(result) => all.merge(ledger::settle(g, l, e.node, result)?),
            NodeEnd::Refused(why) => {
                refused.insert(e.node, why);
                all.merge(ledger::settle(g, l, e.node, NodeResult::Failed)?);
            }
            NodeEnd::Expand {
                graph: bigger,
                added,
                stored: doc,
            } => {
                let bigger = *bigger;
                all.merge(ledger::expand(&bigger, l, e.node, added)?);
                stored.push(doc);
                grown = Some(bigger);
            }
        }
    }
    let g = grown.as_ref().unwrap_or(graph);
    for &(node, _) in unmade {
        all.merge(ledger::settle(g, l, node, NodeResult::Failed)?);
    }
    Ok((all, grown, stored, refused))
}

/// Refuses ends naming a node `graph` (workflow `wf`'s) does not have.
fn check_nodes(wf: u64, graph: &Graph, ends: &[End]) -> Result<(), Error> {
    match ends.iter().find(|e| e.node >= graph.len()) {
        Some(e) => Err(bad(format!(
            "task {} is node {} of workflow {wf}, which has {} nodes",
            e.task,
            e.node,
            graph.len()
        ))),
        None => Ok(()),
    }
}

/// What one ended task is, as `wf_ends` reads it.
enum Seen {
    /// No workflow node's task (any more).
    Unmarked,
    /// Node `.1` of workflow `.0`, with its task's state, result and error
    /// (`None`: its record is gone).
    #[allow(clippy::type_complexity)]
    Marked(
        u64,
        usize,
        Option<(TaskState, Option<Vec<u8>>, Option<String>)>,
    ),
}

impl RedisBackend {
    /// The key of the set of ended node tasks, and of node task → workflow.
    fn wf_sets(&self) -> (String, String) {
        let p = self.prefix();
        (format!("{p}wf:ended"), format!("{p}wf:tasks"))
    }

    /// Settles the nodes of the ended tasks among `tasks` (`None`: every
    /// one recorded); how many it settled.
    pub(crate) async fn settle_ended(&self, tasks: Option<&[u64]>) -> Result<u64, Error> {
        if let Some(ids) = tasks {
            return self.settle_tasks(ids, false).await;
        }
        let (ended, _) = self.wf_sets();
        let mut conn = self.inner.conn.clone();
        let mut cursor: u64 = 0;
        let mut total = 0;
        loop {
            let (next, ids): (u64, Vec<u64>) = redis::cmd("SSCAN")
                .arg(&ended)
                .arg(cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error("reading ended workflow nodes", e))?;
            if !ids.is_empty() {
                total += self.settle_tasks(&ids, true).await?;
            }
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }

    /// [`settle_ended`](Self::settle_ended) after an operation that ended
    /// tasks: a failure is logged, not returned (the operation itself
    /// succeeded; maintenance settles what is left).
    pub(crate) async fn settle_after(&self, tasks: Option<&[u64]>) {
        if let Err(e) = self.settle_ended(tasks).await {
            tracing::warn!(error = %e, "redis: settling workflow nodes (maintenance will retry)");
        }
    }

    /// Settles the nodes of those of `ids` that are node tasks in a final
    /// state; with `strays`, ids recorded as ended that are no node task's
    /// any more are dropped from the record.
    async fn settle_tasks(&self, ids: &[u64], strays: bool) -> Result<u64, Error> {
        let seen = self.task_ends(ids).await?;
        let mut by_wf: BTreeMap<u64, Vec<End>> = BTreeMap::new();
        let mut gone: Vec<u64> = Vec::new();
        for (&task, seen) in ids.iter().zip(seen) {
            let (wf, node, end) = match seen {
                Seen::Unmarked => {
                    if strays {
                        gone.push(task);
                    }
                    continue;
                }
                Seen::Marked(wf, node, end) => (wf, node, end),
            };
            let end = match end {
                None => End {
                    task,
                    node,
                    result: NodeResult::Failed,
                    result_bytes: None,
                    error: Some("the node's task record is gone".to_string()),
                },
                Some((state, result_bytes, error)) => End {
                    task,
                    node,
                    result: match NodeResult::of(state) {
                        Some(result) => result,
                        // Not ended (or requeued since): its end settles it.
                        None => continue,
                    },
                    result_bytes,
                    error,
                },
            };
            by_wf.entry(wf).or_default().push(end);
        }
        if !gone.is_empty() {
            let (ended, _) = self.wf_sets();
            let mut conn = self.inner.conn.clone();
            redis::cmd("SREM")
                .arg(&ended)
                .arg(&gone)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(|e| redis_error("dropping settled workflow nodes", e))?;
        }
        let mut settled = 0;
        for (wf, ends) in by_wf {
            self.settle_workflow(wf, &ends).await?;
            settled += ends.len() as u64;
        }
        Ok(settled)
    }

    /// What each of `ids` is, read in one call (`wf_ends`): its workflow
    /// and node, with its state, result and error (`None` for a task that
    /// does not exist), or no node task's any more.
    async fn task_ends(&self, ids: &[u64]) -> Result<Vec<Seen>, Error> {
        let what = "reading the ends of workflow node tasks";
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.call(Op::WfEnds);
        for id in ids {
            inv.arg(id);
        }
        let n = ids.len();
        let items = reply::array(self.run(what, &inv).await?, what)?;
        if items.len() != 4 * n {
            return Err(bad(format!("{what}: {} items for {n} tasks", items.len())));
        }
        let mut out = Vec::with_capacity(n);
        let mut items = items.into_iter();
        for &id in ids {
            let (Some(mark), Some(state), Some(result), Some(error)) =
                (items.next(), items.next(), items.next(), items.next())
            else {
                break;
            };
            let Some(mark) = reply::opt_bytes(mark, what)? else {
                out.push(Seen::Unmarked);
                continue;
            };
            let mark = String::from_utf8_lossy(&mark);
            let (wf, node) = mark
                .split_once(' ')
                .and_then(|(w, n)| Some((w.parse().ok()?, n.parse().ok()?)))
                .ok_or_else(|| bad(format!("task {id}'s workflow mark {mark:?}")))?;
            let state = reply::bytes(state, what)?;
            if state.is_empty() {
                out.push(Seen::Marked(wf, node, None));
                continue;
            }
            let code: i64 = std::str::from_utf8(&state)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("{what}: a state code {state:?}")))?;
            let state = TaskState::from_code(code)
                .ok_or_else(|| bad(format!("{what}: unknown state code {code}")))?;
            let error =
                reply::opt_bytes(error, what)?.map(|e| String::from_utf8_lossy(&e).into_owned());
            let result = reply::opt_bytes(result, what)?;
            out.push(Seen::Marked(wf, node, Some((state, result, error))));
        }
        Ok(out)
    }

    /// Settles `ends`, nodes of workflow `wf`, reading again while another
    /// process changes the workflow under it.
    async fn settle_workflow(&self, wf: u64, ends: &[End]) -> Result<(), Error> {
        for _ in 0..TRIES {
            if self.try_settle(wf, ends).await? {
                return Ok(());
            }
        }
        Err(Error::backend_other(format!(
            "workflow {wf} changed under {TRIES} settles in a row; maintenance settles it later"
        )))
    }

    /// One try of [`settle_workflow`](Self::settle_workflow): `false` when
    /// the workflow changed between the read and the write.
    async fn try_settle(&self, wf: u64, ends: &[End]) -> Result<bool, Error> {
        let settled: Vec<u64> = ends.iter().map(|e| e.task).collect();
        let kept = self
            .inner
            .graphs
            .get(wf)
            .filter(|g| !ends.iter().any(|e| e.node >= g.len() || e.expands()));
        let read = match kept {
            // The graph known (and an expansion not to decide): the head
            // and the likely rows in one read (the callbacks' rows, when
            // the body ends, in a second).
            Some(graph) => {
                let mut first: Vec<usize> = ends
                    .iter()
                    .flat_map(|e| std::iter::once(e.node).chain(graph.dependents(e.node).to_vec()))
                    .collect();
                first.sort_unstable();
                first.dedup();
                match self.wf_head_with_rows(wf, graph, &first).await? {
                    Some(read) => Some(read),
                    // It grew elsewhere since the graph was kept.
                    None if self.inner.graphs.get(wf).is_none() => return Ok(false),
                    None => None,
                }
            }
            None => match self.wf_head(wf).await? {
                Some(head) => {
                    let graph = head.graph.clone();
                    check_nodes(wf, &graph, ends)?;
                    let mut first: Vec<usize> = ends
                        .iter()
                        .flat_map(|e| ReadAhead::likely(&graph, e.node, &head.tally))
                        .collect();
                    first.sort_unstable();
                    first.dedup();
                    let mut ahead = ReadAhead::new(head.tally);
                    if !self.wf_rows(wf, &head.version, &first, &mut ahead).await? {
                        return Ok(false);
                    }
                    Some((head, ahead))
                }
                None => None,
            },
        };
        let Some((head, mut ahead)) = read else {
            // Pruned: nothing is left to settle.
            self.forget_ends(&settled).await?;
            return Ok(true);
        };
        // Nodes made ready whose task cannot be made (params that do not
        // compose, or too large): they fail at once, and the decision runs
        // again with them.
        let mut unmade: Vec<(usize, String)> = Vec::new();
        loop {
            let decided = self
                .wf_decide(wf, &head.version, &mut ahead, |l| {
                    decide_ends(&head.graph, l, ends, &unmade)
                })
                .await?;
            let Some((step, grown, expansions, refused)) = decided else {
                return Ok(false);
            };
            let graph: Arc<Graph> = grown.map_or_else(|| head.graph.clone(), Arc::new);
            let mut change = Change::from_decision(&head, &ahead, false);
            let before = head.graph.expansions();
            for (k, doc) in expansions.iter().enumerate() {
                change
                    .outputs
                    .push((codec::expansion_field(before + k), doc.clone()));
            }
            if !expansions.is_empty() {
                let count = (before + expansions.len()).to_string();
                change
                    .outputs
                    .push((codec::EXPANSIONS.to_string(), count.into_bytes()));
            }
            let written: HashMap<usize, NodeState> =
                change.rows.iter().map(|&(n, r)| (n, r.state)).collect();
            // What the nodes settled now leave their dependents.
            let mut known: HashMap<usize, NodeOutput> = HashMap::new();
            for e in ends {
                let Some(&state) = written.get(&e.node).filter(|s| s.is_final()) else {
                    continue;
                };
                if let Some(r) = &e.result_bytes {
                    change.outputs.push((field('r', e.node), r.clone()));
                }
                let error = refused.get(&e.node).or(e.error.as_ref());
                if let Some(x) = error {
                    change
                        .outputs
                        .push((field('e', e.node), x.clone().into_bytes()));
                }
                known.insert(e.node, (state, e.result_bytes.clone(), error.cloned()));
            }
            for (node, error) in &unmade {
                change
                    .outputs
                    .push((field('e', *node), error.clone().into_bytes()));
                known.insert(*node, (NodeState::Failed, None, Some(error.clone())));
            }
            let ready: Vec<usize> = step
                .enqueue
                .into_iter()
                .filter(|n| written.get(n) == Some(&NodeState::Running))
                .collect();
            let composed = self
                .compose_ready(wf, &head.version, &graph, &ready, &change.rows, &mut known)
                .await?;
            let Some((made, more)) = composed else {
                return Ok(false);
            };
            if more.is_empty() {
                change.settled = settled;
                (change.ready, change.tasks) = made.into_iter().unzip();
                let applied = self.wf_apply(wf, &head.version, &change).await?.is_some();
                if applied && !expansions.is_empty() {
                    self.inner.graphs.put(wf, graph);
                }
                return Ok(applied);
            }
            unmade.extend(more);
        }
    }

    /// The tasks of the `ready` nodes, their params composed from `known`
    /// outputs and those of their other dependencies, read at `version`
    /// (in the states the decision `written` gave them: an expanded node
    /// settles with its last added node); and the nodes whose task cannot
    /// be made, with why. `None` when the workflow moved on from `version`.
    #[allow(clippy::type_complexity)]
    pub(super) async fn compose_ready(
        &self,
        wf: u64,
        version: &[u8],
        graph: &Graph,
        ready: &[usize],
        written: &[(usize, NodeRow)],
        known: &mut HashMap<usize, NodeOutput>,
    ) -> Result<Option<(Vec<(usize, NewTask)>, Vec<(usize, String)>)>, Error> {
        let mut deps: Vec<usize> = ready
            .iter()
            .flat_map(|&n| graph.reads(n))
            .filter(|d| !known.contains_key(d))
            .collect();
        deps.sort_unstable();
        deps.dedup();
        let Some(mut stored) = self.wf_outputs(wf, version, &deps).await? else {
            return Ok(None);
        };
        for (node, row) in written {
            if let Some(output) = stored.get_mut(node) {
                output.0 = row.state;
            }
        }
        known.extend(stored);
        self.compose(wf, graph, ready, known).map(Some)
    }

    /// The tasks of the `ready` nodes, their params composed from `known`
    /// outputs; and the nodes whose task cannot be made, with why.
    #[allow(clippy::type_complexity)]
    fn compose(
        &self,
        wf: u64,
        graph: &Graph,
        ready: &[usize],
        known: &HashMap<usize, NodeOutput>,
    ) -> Result<(Vec<(usize, NewTask)>, Vec<(usize, String)>), Error> {
        let mut made = Vec::with_capacity(ready.len());
        let mut unmade = Vec::new();
        for &node in ready {
            let outputs = graph
                .reads(node)
                .into_iter()
                .map(|dep| {
                    known
                        .get(&dep)
                        .cloned()
                        .ok_or_else(|| bad(format!("workflow {wf} has no output of node {dep}")))
                })
                .collect::<Result<Vec<NodeOutput>, Error>>()?;
            let task = composed_task(graph, node, &outputs).and_then(|t| {
                t.validate()?;
                self.limit.check_params(&t)?;
                Ok(t)
            });
            match task {
                Ok(t) => made.push((node, t)),
                Err(e @ Error::Backend(_)) => return Err(e),
                Err(e) => unmade.push((node, e.to_string())),
            }
        }
        Ok((made, unmade))
    }

    /// Drops the ended records of `tasks` (their workflow is gone).
    async fn forget_ends(&self, tasks: &[u64]) -> Result<(), Error> {
        let (ended, marks) = self.wf_sets();
        let mut conn = self.inner.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("SREM")
            .arg(&ended)
            .arg(tasks)
            .ignore()
            .cmd("HDEL")
            .arg(&marks)
            .arg(tasks)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| redis_error("dropping a gone workflow's ends", e))
    }
}
