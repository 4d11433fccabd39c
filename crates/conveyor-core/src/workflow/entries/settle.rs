//! Settling nodes, and creating the tasks of the nodes a settle made
//! ready.
//!
//! A node task's end is written first (by the backend's finish, cancel or
//! lease recovery, on the task's own record, which keeps the link to its
//! node), then settled here, then its message is acked. The settle is a
//! compare-and-set on the workflow's entry deciding with
//! [`ledger`](crate::workflow::ledger): a node settles only while it runs
//! under that very task, so an end heard twice (a redelivery of a message
//! whose settle was cut short, a maintenance pass) changes nothing.
//!
//! The nodes a settle makes ready are written into the entry as pending,
//! with their task ids, in the same compare-and-set; their tasks are
//! created after it (with those ids), and then taken off the pending list.
//! Whoever next settles a node of the workflow, or maintenance's pass,
//! creates what a crash left pending. A node whose params cannot be
//! composed (or would not fit a task) fails without a task, its error kept
//! in the entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::entry::FlowEntry;
use super::{all, keys, EntryStore, NodeLink, NodeTask};
use crate::workflow::{
    composed_task, is_expansion, ledger, Graph, NodeEnd, NodeOutput, NodeResult, NodeState,
    Progress, Step,
};
use crate::{BackendErrorKind, Error, TaskState, Timestamp};

/// How often a compare-and-set on one workflow's entry is tried before the
/// call gives up (the next end heard, or maintenance, takes it on).
const CAS_TRIES: usize = 500;

/// How many node tasks are created at once.
const CREATE_BATCH: usize = 1_000;

/// A node task's end, to settle.
#[derive(Debug, Clone)]
pub struct Ended {
    link: NodeLink,
    task: u64,
    result: NodeResult,
    /// Its result, when it asks for an expansion.
    expansion: Option<Arc<[u8]>>,
}

impl Ended {
    /// The end of task `task` of node `link`, in `state` with `result`;
    /// `None` while `state` is not final.
    pub fn of(link: NodeLink, task: u64, state: TaskState, result: Option<&[u8]>) -> Option<Ended> {
        let result_kind = NodeResult::of(state)?;
        let expansion = result
            .filter(|r| result_kind == NodeResult::Succeeded && is_expansion(r))
            .map(Arc::from);
        Some(Ended {
            link,
            task,
            result: result_kind,
            expansion,
        })
    }
}

/// Workflow `flow`'s entry and its revision; `None` when it is gone.
pub(crate) async fn read_flow<S: EntryStore + ?Sized>(
    store: &S,
    flow: u64,
) -> Result<Option<(FlowEntry, u64)>, Error> {
    match store.entry(&keys::flow(flow)).await? {
        Some((bytes, rev)) => Ok(Some((FlowEntry::decode(store.kind(), &bytes)?, rev))),
        None => Ok(None),
    }
}

/// Writes `entry` if workflow `flow`'s is still at `rev`.
pub(crate) async fn write_flow<S: EntryStore + ?Sized>(
    store: &S,
    flow: u64,
    entry: &FlowEntry,
    rev: u64,
) -> Result<Option<u64>, Error> {
    let bytes = entry.encode();
    if bytes.len() > store.entry_limit() {
        return Err(Error::backend(
            BackendErrorKind::TooLarge,
            format!(
                "{}: workflow {flow}'s entry would be {} bytes, over the {} an entry may hold",
                store.kind(),
                bytes.len(),
                store.entry_limit()
            ),
        ));
    }
    store.cas(&keys::flow(flow), bytes, rev).await
}

/// Workflow `flow`'s graph, read from its declaration and the expansions
/// `entry` lists (kept once read, and read again once the entry lists
/// more expansions than the graph kept); `None` when it is gone.
pub(crate) async fn graph_of<S: EntryStore + ?Sized>(
    store: &S,
    flow: u64,
    entry: &FlowEntry,
) -> Result<Option<Arc<Graph>>, Error> {
    if let Some(graph) = store.graphs().get(flow) {
        if graph.expansions() == entry.grown.len() {
            return Ok(Some(graph));
        }
    }
    let Some(declaration) =
        read_parts(store, (0..entry.parts).map(|k| keys::flow_spec(flow, k))).await?
    else {
        return Ok(None);
    };
    let mut docs = Vec::with_capacity(entry.grown.len());
    for g in &entry.grown {
        let keys = (0..g.parts).map(|k| keys::flow_growth(flow, g.node, k));
        match read_parts(store, keys).await? {
            Some(doc) => docs.push(doc),
            None => return Ok(None),
        }
    }
    store
        .graphs()
        .decode_grown(flow, &declaration, docs.iter().map(Vec::as_slice))
        .map(Some)
}

/// The entries under `keys`, joined; `None` when one is missing.
async fn read_parts<S: EntryStore + ?Sized>(
    store: &S,
    keys: impl Iterator<Item = String>,
) -> Result<Option<Vec<u8>>, Error> {
    let keys: Vec<String> = keys.collect();
    let reads: Vec<_> = keys.iter().map(|key| store.entry(key)).collect();
    let mut bytes = Vec::new();
    for part in all(reads).await {
        match part? {
            Some((b, _)) => bytes.extend_from_slice(&b),
            None => return Ok(None),
        }
    }
    Ok(Some(bytes))
}

/// Writes `doc` under the keys `key(k)`, in parts that fit an entry
/// (created only where there is none when `create`, else written over
/// whatever is there); how many, or `None` when a part to create existed.
pub(crate) async fn write_parts<S: EntryStore + ?Sized>(
    store: &S,
    doc: &[u8],
    key: impl Fn(u32) -> String,
    create: bool,
) -> Result<Option<u32>, Error> {
    let chunk = store.entry_limit().max(1);
    let parts: Vec<(String, &[u8])> = doc
        .chunks(chunk)
        .enumerate()
        .map(|(k, part)| (key(k as u32), part))
        .collect();
    let writes: Vec<_> = parts
        .iter()
        .map(|(key, part)| async move {
            if create {
                Ok(store.create(key, part.to_vec()).await?.is_some())
            } else {
                store.put(key, part.to_vec()).await.map(|()| true)
            }
        })
        .collect();
    let mut fresh = true;
    for w in all(writes).await {
        fresh &= w?;
    }
    Ok(fresh.then_some(parts.len() as u32))
}

/// Settles the nodes of every end in `ended` (several of one workflow in
/// one write), and creates the tasks their settles made ready.
pub async fn settle<S: EntryStore + ?Sized>(store: &S, ended: Vec<Ended>) -> Result<(), Error> {
    let mut by_flow: BTreeMap<u64, Vec<Ended>> = BTreeMap::new();
    for e in ended {
        by_flow.entry(e.link.flow).or_default().push(e);
    }
    let jobs: Vec<_> = by_flow
        .into_iter()
        .map(|(flow, ends)| settle_flow(store, flow, ends))
        .collect();
    let mut failure = None;
    for r in all(jobs).await {
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Settles `ends`, all of workflow `flow`. An end that asks for an
/// expansion (of a node still running) writes the expansion's document
/// (before the entry that lists it: a crash between leaves parts nobody
/// reads, overwritten if the node expands after all) and takes its task
/// ids first, then grows the entry in the same compare-and-set as the rest.
async fn settle_flow<S: EntryStore + ?Sized>(
    store: &S,
    flow: u64,
    ends: Vec<Ended>,
) -> Result<(), Error> {
    // Ids taken for an expansion, by node, kept across tries.
    let mut blocks: HashMap<usize, u64> = HashMap::new();
    for _ in 0..CAS_TRIES {
        let Some((mut entry, rev)) = read_flow(store, flow).await? else {
            return Ok(());
        };
        let Some(mut graph) = graph_of(store, flow, &entry).await? else {
            return Ok(());
        };
        let before = entry.states();
        let grown_before = entry.grown.len();
        let mut progress = Progress::from_states(&graph, before.clone())?;
        let mut step = Step::default();
        for e in &ends {
            let node = e.link.node as usize;
            if node >= entry.len() || entry.task(node) != Some(e.task) {
                continue;
            }
            let asked = e
                .expansion
                .as_deref()
                .filter(|_| entry.state(node) == Some(NodeState::Running));
            let Some(asked) = asked else {
                step.merge(ledger::settle(&graph, &mut progress, node, e.result)?);
                continue;
            };
            match NodeEnd::of(&graph, node, e.result, Some(asked)) {
                NodeEnd::Settle(result) => {
                    step.merge(ledger::settle(&graph, &mut progress, node, result)?);
                }
                NodeEnd::Refused(why) => {
                    entry.errors.insert(node as u32, why);
                    step.merge(ledger::settle(
                        &graph,
                        &mut progress,
                        node,
                        NodeResult::Failed,
                    )?);
                }
                NodeEnd::Expand {
                    graph: grown,
                    added,
                    stored,
                } => {
                    let growth = |k| keys::flow_growth(flow, node as u32, k);
                    let parts = write_parts(store, &stored, growth, false)
                        .await?
                        .unwrap_or_default();
                    let base = match blocks.get(&node) {
                        Some(&base) => base,
                        None => {
                            let base = store.alloc_ids(added.len() as u64).await?;
                            *blocks.entry(node).or_insert(base)
                        }
                    };
                    entry.grow(node, added.len(), base, parts);
                    graph = Arc::from(grown);
                    step.merge(ledger::expand(&graph, &mut progress, node, added)?);
                }
            }
        }
        if progress.states() == before {
            return flush(store, flow, &graph, entry, rev, Flush::Made(&[])).await;
        }
        apply(&mut entry, &progress, &step, store.now());
        if let Some(rev) = write_flow(store, flow, &entry, rev).await? {
            if entry.grown.len() > grown_before {
                store.graphs().put(flow, graph.clone());
            }
            return flush(store, flow, &graph, entry, rev, Flush::Made(&step.enqueue)).await;
        }
    }
    Err(contended(store.kind(), flow))
}

/// Creates the tasks of the nodes `entry` (at `rev`) has pending, then
/// takes them off the list; a node that cannot have its task fails, and
/// what that decides is flushed in turn.
///
/// On a store where creating a task twice would run it twice
/// ([`EntryStore::pending_watch`]), a caller that made nodes pending
/// creates those alone ([`Flush::Made`]): another settle of the workflow
/// may be creating the rest right now.
pub(crate) async fn flush<S: EntryStore + ?Sized>(
    store: &S,
    flow: u64,
    graph: &Arc<Graph>,
    mut entry: FlowEntry,
    mut rev: u64,
    which: Flush<'_>,
) -> Result<(), Error> {
    let mut graph = graph.clone();
    let watch = store.pending_watch();
    let mut mine: Option<HashSet<u32>> = match (which, watch) {
        // Those it made, and those whose creation failed here before (the
        // end that made them is being reported again).
        (Flush::Made(nodes), Some(w)) => {
            let mut m: HashSet<u32> = nodes.iter().map(|&n| n as u32).collect();
            m.extend(w.owed(flow));
            Some(m)
        }
        _ => None,
    };
    loop {
        let nodes: Vec<usize> = entry
            .pending
            .iter()
            .filter(|n| mine.as_ref().is_none_or(|m| m.contains(n)))
            .map(|&n| n as usize)
            .collect();
        if nodes.is_empty() {
            return Ok(());
        }
        let outputs = outputs(store, &graph, &entry, &nodes).await?;
        let mut tasks = Vec::new();
        let mut failed: Vec<(usize, String)> = Vec::new();
        for &node in &nodes {
            let composed = composed_task(&graph, node, &outputs[&node])
                .and_then(|task| store.check_task(&task).map(|()| task))
                .and_then(|task| {
                    let task = NodeTask {
                        id: entry.task_id(node),
                        link: NodeLink {
                            flow,
                            node: node as u32,
                        },
                        task,
                    };
                    store.check_node_task(&task).map(|()| task)
                });
            match composed {
                Ok(task) => tasks.push(task),
                Err(e) => failed.push((node, e.to_string())),
            }
        }
        // In batches, as a big enqueue is sent: ten thousand requests at
        // once would outrun the server's answers.
        let mut tasks = tasks.into_iter().peekable();
        while tasks.peek().is_some() {
            let batch: Vec<NodeTask> = tasks.by_ref().take(CREATE_BATCH).collect();
            if let Err(e) = store.create_tasks(batch).await {
                if let Some(w) = watch {
                    w.owe(flow, nodes.iter().map(|&n| n as u32));
                }
                return Err(e);
            }
        }
        let made;
        (entry, rev, graph, made) =
            match unpend(store, flow, graph, entry, rev, &nodes, &failed).await? {
                Some(next) => next,
                None => return Ok(()),
            };
        if let Some(w) = watch {
            w.paid(flow, nodes.iter().map(|&n| n as u32));
        }
        if let Some(mine) = &mut mine {
            mine.extend(made.iter().map(|&n| n as u32));
        }
    }
}

/// Which pending nodes [`flush`] creates the tasks of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Flush<'a> {
    /// Every one (maintenance's pass, or a caller that made none).
    All,
    /// Those the caller made pending (and what failing them makes ready).
    Made(&'a [usize]),
}

/// Takes `nodes` (their tasks created) off `entry`'s pending list, and
/// fails the `failed` ones; cancels the tasks of those a cancel reached
/// first. The entry as written with its graph (read again when another
/// settle expanded the workflow meanwhile), or `None` when the workflow is
/// gone.
async fn unpend<S: EntryStore + ?Sized>(
    store: &S,
    flow: u64,
    mut graph: Arc<Graph>,
    mut entry: FlowEntry,
    mut rev: u64,
    nodes: &[usize],
    failed: &[(usize, String)],
) -> Result<Option<(FlowEntry, u64, Arc<Graph>, Vec<usize>)>, Error> {
    for _ in 0..CAS_TRIES {
        if graph.expansions() != entry.grown.len() {
            graph = match graph_of(store, flow, &entry).await? {
                Some(g) => g,
                None => return Ok(None),
            };
        }
        let graph = &graph;
        let done: HashSet<u32> = nodes.iter().map(|&n| n as u32).collect();
        entry.pending.retain(|n| !done.contains(n));
        let mut progress = Progress::from_states(graph, entry.states())?;
        let mut step = Step::default();
        for (node, error) in failed {
            if entry.state(*node) == Some(NodeState::Running) {
                entry.errors.insert(*node as u32, error.clone());
                entry.clear_task(*node);
                step.merge(ledger::settle(
                    graph,
                    &mut progress,
                    *node,
                    NodeResult::Failed,
                )?);
            }
        }
        apply(&mut entry, &progress, &step, store.now());
        if let Some(new_rev) = write_flow(store, flow, &entry, rev).await? {
            // A cancel of the workflow that came between the creation and
            // this write may have missed these tasks: cancel them.
            let late: Vec<u64> = nodes
                .iter()
                .filter(|&&n| entry.state(n) == Some(NodeState::Cancelled))
                .filter_map(|&n| entry.task(n))
                .collect();
            for task in late {
                let _ = store.cancel_task(task).await;
            }
            return Ok(Some((entry, new_rev, graph.clone(), step.enqueue)));
        }
        (entry, rev) = match read_flow(store, flow).await? {
            Some(e) => e,
            None => return Ok(None),
        };
    }
    Err(contended(store.kind(), flow))
}

/// What the dependencies of each of `nodes` left, in the graph's order.
async fn outputs<S: EntryStore + ?Sized>(
    store: &S,
    graph: &Graph,
    entry: &FlowEntry,
    nodes: &[usize],
) -> Result<HashMap<usize, Vec<NodeOutput>>, Error> {
    let mut wanted: Vec<u64> = nodes
        .iter()
        .flat_map(|&n| graph.reads(n))
        .filter_map(|dep| entry.task(dep))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let records = if wanted.is_empty() {
        HashMap::new()
    } else {
        store.outputs(&wanted).await?
    };
    let output = |dep: usize| -> NodeOutput {
        let state = entry.state(dep).unwrap_or(NodeState::Skipped);
        match entry.task(dep).and_then(|t| records.get(&t)) {
            Some((result, error)) => (state, result.clone(), error.clone()),
            None => (state, None, entry.errors.get(&(dep as u32)).cloned()),
        }
    };
    Ok(nodes
        .iter()
        .map(|&n| {
            let outs = graph.reads(n).into_iter().map(&output).collect();
            (n, outs)
        })
        .collect())
}

/// Writes a decision into `entry`: the states `progress` holds, the nodes
/// `step` made ready pending with their tasks, the end.
pub(crate) fn apply(entry: &mut FlowEntry, progress: &Progress, step: &Step, now: Timestamp) {
    entry.set_states(&progress.states());
    entry.set_outcome(progress.outcome());
    for &node in &step.enqueue {
        entry.mark_task(node);
        entry.pending.push(node as u32);
    }
    if progress.is_over() {
        entry.ended_at.get_or_insert(now.as_millis());
    }
}

/// The refusal of a workflow whose entry stayed contended.
pub(crate) fn contended(kind: &str, flow: u64) -> Error {
    Error::backend(
        BackendErrorKind::Busy,
        format!("{kind}: workflow {flow}'s entry stayed contended"),
    )
}
