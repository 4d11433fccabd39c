//! A workflow's entry (`f.<id>`): every node's state, the
//! task ids its nodes run under, the nodes whose tasks may not exist yet,
//! and how the workflow stands. One entry, changed only by compare-and-set
//! on its revision, so a settle, a cancel and a retry of one workflow never
//! both write from the same read.
//!
//! Task ids are taken for every node at once ([`FlowEntry::bases`]): node
//! `n` of run `r` is task `bases[r] + n`. So the id of a node's task is
//! decided with the step that makes the node run, and creating that task
//! again (after a crash between the step and the enqueue) creates nothing
//! twice. A retry takes a fresh block for the nodes it puts back.
//!
//! Stored as JSON with the states as one character per node (their codes),
//! so a chord of 10,000 headers is an entry of about 10 kB.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bad_data;
use crate::workflow::{NodeState, WorkflowOutcome, WorkflowState};
use crate::{Error, Timestamp};

/// The form's version.
const VERSION: u32 = 1;

/// One workflow's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FlowEntry {
    v: u32,
    /// Every node's state code, one digit per node, in the graph's order.
    states: String,
    /// Whether each node has a task in its current run (`1`) or not (`0`:
    /// it never ran, or was skipped or cancelled before it did).
    tasks: String,
    /// How many entries (`fd.<id>.<k>`) the declaration is split into.
    pub(crate) parts: u32,
    /// The first task id of each run's block.
    pub(crate) bases: Vec<u64>,
    /// The run of each node put back by a retry (absent: run 0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    runs: BTreeMap<u32, u32>,
    /// Nodes running whose tasks may not have been created yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) pending: Vec<u32>,
    /// The expansions made, in order (see [`Growth`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) grown: Vec<Growth>,
    /// Why a node failed without a task (its params could not be composed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) errors: BTreeMap<u32, String>,
    /// How the body ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<i16>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) cancelled: bool,
    pub(crate) created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ended_at: Option<i64>,
}

/// One expansion: node `node` added the nodes from position `first` on
/// (up to the next expansion's, or the end), their tasks from id `base`
/// on (in position order), its document in `parts` entries
/// (`fg.<id>.<node>.<k>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Growth {
    pub(crate) node: u32,
    pub(crate) parts: u32,
    pub(crate) first: u32,
    pub(crate) base: u64,
}

impl FlowEntry {
    /// A new workflow's entry: `states` as it starts, its tasks' ids from
    /// `base`, its declaration in `parts` entries.
    pub(crate) fn new(states: &[NodeState], base: u64, parts: u32, now: Timestamp) -> FlowEntry {
        let mut entry = FlowEntry {
            v: VERSION,
            parts,
            states: String::new(),
            tasks: "0".repeat(states.len()),
            bases: vec![base],
            runs: BTreeMap::new(),
            pending: Vec::new(),
            grown: Vec::new(),
            errors: BTreeMap::new(),
            outcome: None,
            cancelled: false,
            created_at: now.as_millis(),
            ended_at: None,
        };
        entry.set_states(states);
        entry
    }

    /// The entry in `bytes` (of a `kind` store); refuses anything else.
    pub(crate) fn decode(kind: &str, bytes: &[u8]) -> Result<FlowEntry, Error> {
        let entry: FlowEntry = serde_json::from_slice(bytes)
            .map_err(|e| bad_data(kind, format!("a workflow entry does not parse: {e}")))?;
        if entry.v != VERSION
            || entry.tasks.len() != entry.states.len()
            || entry.bases.is_empty()
            || entry.states.bytes().any(|c| !(b'0'..=b'5').contains(&c))
        {
            return Err(bad_data(
                kind,
                "a workflow entry is not in a form this version reads",
            ));
        }
        Ok(entry)
    }

    /// The entry as stored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// How many nodes it has.
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Every node's state.
    pub(crate) fn states(&self) -> Vec<NodeState> {
        self.states
            .bytes()
            .map(|c| {
                NodeState::from_code(i64::from(c - b'0'), "workflow entry")
                    .unwrap_or(NodeState::Skipped)
            })
            .collect()
    }

    /// Sets every node's state.
    pub(crate) fn set_states(&mut self, states: &[NodeState]) {
        self.states = states
            .iter()
            .map(|s| char::from(b'0' + s.code() as u8))
            .collect();
    }

    /// Node `node`'s state.
    pub(crate) fn state(&self, node: usize) -> Option<NodeState> {
        let c = *self.states.as_bytes().get(node)?;
        NodeState::from_code(i64::from(c - b'0'), "workflow entry").ok()
    }

    /// The id node `node` runs (or would run) under in its current run.
    pub(crate) fn task_id(&self, node: usize) -> u64 {
        let run = self.runs.get(&(node as u32)).copied();
        if run.is_none() {
            let added = self.grown.iter().rev().find(|g| g.first as usize <= node);
            if let Some(g) = added {
                return g.base + (node - g.first as usize) as u64;
            }
        }
        let run = run.unwrap_or(0) as usize;
        let base = self
            .bases
            .get(run)
            .or(self.bases.last())
            .copied()
            .unwrap_or(0);
        base + node as u64
    }

    /// Node `node`'s task, if it has one in its current run.
    pub(crate) fn task(&self, node: usize) -> Option<u64> {
        (self.tasks.as_bytes().get(node) == Some(&b'1')).then(|| self.task_id(node))
    }

    /// Marks node `node` as having its task (it is about to be created).
    pub(crate) fn mark_task(&mut self, node: usize) {
        self.set_task_flag(node, b'1');
    }

    /// Marks node `node` as having no task in its current run.
    pub(crate) fn clear_task(&mut self, node: usize) {
        self.set_task_flag(node, b'0');
    }

    fn set_task_flag(&mut self, node: usize, flag: u8) {
        if node < self.tasks.len() {
            // Both flags are ASCII, as every byte of the string is.
            self.tasks
                .replace_range(node..=node, if flag == b'1' { "1" } else { "0" });
        }
    }

    /// Records an expansion: node `node` added `added` nodes (after every
    /// node there is, waiting, with no task yet), their tasks' ids from
    /// `base`, its document in `parts` entries.
    pub(crate) fn grow(&mut self, node: usize, added: usize, base: u64, parts: u32) {
        self.grown.push(Growth {
            node: node as u32,
            parts,
            first: self.len() as u32,
            base,
        });
        self.states.push_str(&"0".repeat(added));
        self.tasks.push_str(&"0".repeat(added));
    }

    /// Every task id its nodes' runs could have: each run's block over
    /// every node, and each expansion's.
    pub(crate) fn every_task_id(&self) -> Vec<u64> {
        let n = self.len() as u64;
        let mut ids: Vec<u64> = self.bases.iter().flat_map(|&b| b..b + n).collect();
        for (k, g) in self.grown.iter().enumerate() {
            let end = self
                .grown
                .get(k + 1)
                .map_or(self.len(), |next| next.first as usize);
            let count = end.saturating_sub(g.first as usize) as u64;
            ids.extend(g.base..g.base + count);
        }
        ids
    }

    /// Puts `nodes` in a new run, under ids from `base`: they forget their
    /// task and their error.
    pub(crate) fn new_run(&mut self, nodes: &[usize], base: u64) {
        self.bases.push(base);
        let run = (self.bases.len() - 1) as u32;
        for &node in nodes {
            self.runs.insert(node as u32, run);
            self.set_task_flag(node, b'0');
            self.errors.remove(&(node as u32));
        }
    }

    /// How the body ended, once it has.
    pub(crate) fn outcome(&self) -> Option<WorkflowOutcome> {
        WorkflowOutcome::from_code(self.outcome.map(i64::from))
    }

    /// Records how the body ended.
    pub(crate) fn set_outcome(&mut self, outcome: Option<WorkflowOutcome>) {
        self.outcome = outcome.map(WorkflowOutcome::code);
    }

    /// How many nodes have not settled.
    pub(crate) fn left(&self) -> u32 {
        self.states().iter().filter(|s| !s.is_final()).count() as u32
    }

    /// Where the workflow stands.
    pub(crate) fn workflow_state(&self) -> WorkflowState {
        WorkflowState::of(self.cancelled, self.left(), self.outcome())
    }

    /// When it ended, if it has.
    pub(crate) fn ended(&self) -> Option<Timestamp> {
        self.ended_at.map(Timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_names_its_tasks() {
        let states = [NodeState::Running, NodeState::Waiting, NodeState::Waiting];
        let mut e = FlowEntry::new(&states, 100, 1, Timestamp(7));
        e.mark_task(0);
        assert_eq!(e.task(0), Some(100));
        assert_eq!(e.task(1), None);
        assert_eq!(e.task_id(2), 102);
        e.new_run(&[0], 500);
        assert_eq!(e.task(0), None);
        assert_eq!(e.task_id(0), 500);
        assert_eq!(e.task_id(1), 101);
        let back = FlowEntry::decode("test", &e.encode()).expect("reads");
        assert_eq!(back, e);
        assert_eq!(back.states(), states.to_vec());
    }

    #[test]
    fn an_expansion_s_nodes_take_ids_from_their_own_block() {
        let states = [NodeState::Running, NodeState::Waiting];
        let mut e = FlowEntry::new(&states, 100, 1, Timestamp(7));
        e.grow(0, 3, 900, 1);
        assert_eq!(e.len(), 5);
        assert_eq!((e.task_id(1), e.task_id(2), e.task_id(4)), (101, 900, 902));
        e.grow(3, 1, 950, 1);
        assert_eq!((e.task_id(4), e.task_id(5)), (902, 950));
        // A retry's run takes over for the nodes it puts back.
        e.new_run(&[3], 2000);
        assert_eq!(e.task_id(3), 2003);
        let ids = e.every_task_id();
        for n in 0..e.len() {
            assert!(ids.contains(&e.task_id(n)), "node {n}");
        }
        assert_eq!(FlowEntry::decode("test", &e.encode()).expect("reads"), e);
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            &b"{"[..],
            br#"{"v":2,"parts":1,"states":"0","tasks":"0","bases":[1],"created_at":0}"#,
            br#"{"v":1,"parts":1,"states":"9","tasks":"0","bases":[1],"created_at":0}"#,
            br#"{"v":1,"parts":1,"states":"00","tasks":"0","bases":[1],"created_at":0}"#,
            br#"{"v":1,"parts":1,"states":"0","tasks":"0","bases":[],"created_at":0}"#,
        ] {
            assert!(FlowEntry::decode("test", bad).is_err());
        }
    }
}
