//! A [`Ledger`] over rows read ahead, for a store whose every read is a
//! round trip (PostgreSQL, a key-value store): the store reads the rows a
//! decision is likely to touch, runs the decision over them, and when the
//! decision asks for a row it has not read (a skip spreading, the body
//! ending), reads those and runs it again from the start. A decision writes
//! only into the read-ahead, so running it again is safe; once it runs
//! through, the store writes back what it changed, in the same transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::graph::Graph;
use super::ledger::{Ledger, NodeRow, Tally};
use crate::Error;

/// Rows read ahead of a decision, and what the decision wrote.
#[derive(Debug, Clone)]
pub struct ReadAhead {
    read: HashMap<usize, NodeRow>,
    tally: Tally,
    written: BTreeMap<usize, NodeRow>,
    tally_written: Option<Tally>,
    missing: BTreeSet<usize>,
    added: BTreeSet<usize>,
}

impl ReadAhead {
    /// A read-ahead holding the workflow's `tally` and no row yet.
    pub fn new(tally: Tally) -> ReadAhead {
        ReadAhead {
            read: HashMap::new(),
            tally,
            written: BTreeMap::new(),
            tally_written: None,
            missing: BTreeSet::new(),
            added: BTreeSet::new(),
        }
    }

    /// Adds node `node`'s stored row.
    pub fn insert(&mut self, node: usize, row: NodeRow) {
        self.read.insert(node, row);
    }

    /// Whether node `node`'s row was read.
    pub fn has(&self, node: usize) -> bool {
        self.read.contains_key(&node)
    }

    /// Runs `decide` over the rows read so far: `Ok(Some(out))` when it ran
    /// through, `Ok(None)` when it asked for rows not read (then
    /// [`ReadAhead::missing`] names them: read them, [`insert`](ReadAhead::insert)
    /// them and run it again).
    pub fn run<T>(
        &mut self,
        decide: impl FnOnce(&mut ReadAhead) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        self.written.clear();
        self.tally_written = None;
        self.missing.clear();
        self.added.clear();
        match decide(self) {
            Ok(out) if self.missing.is_empty() => Ok(Some(out)),
            Err(e) if self.missing.is_empty() => Err(e),
            _ => Ok(None),
        }
    }

    /// The rows the last run asked for and did not find.
    pub fn missing(&self) -> Vec<usize> {
        self.missing.iter().copied().collect()
    }

    /// The rows the last run wrote, by node.
    pub fn written_rows(&self) -> impl Iterator<Item = (usize, NodeRow)> + '_ {
        self.written.iter().map(|(&node, &row)| (node, row))
    }

    /// Whether the last run added node `node`'s row (an expansion's: the
    /// store inserts it rather than updates it).
    pub fn is_added(&self, node: usize) -> bool {
        self.added.contains(&node)
    }

    /// The tally the last run wrote, if it wrote one.
    pub fn written_tally(&self) -> Option<Tally> {
        self.tally_written
    }

    /// The rows worth reading before settling node `node` of `graph`: the
    /// node and its dependents, and the callbacks when the body may end with
    /// it (its last unsettled node).
    pub fn likely(graph: &Graph, node: usize, tally: &Tally) -> Vec<usize> {
        let mut rows = vec![node];
        rows.extend_from_slice(graph.dependents(node));
        if tally.body_left <= 1 {
            rows.extend(graph.callbacks());
        }
        rows.sort_unstable();
        rows.dedup();
        rows
    }
}

impl Ledger for ReadAhead {
    fn row(&mut self, node: usize) -> Result<NodeRow, Error> {
        if let Some(row) = self.written.get(&node).or_else(|| self.read.get(&node)) {
            return Ok(*row);
        }
        self.missing.insert(node);
        Err(Error::backend_other(format!(
            "workflow node {node}'s row was not read ahead"
        )))
    }

    fn set_row(&mut self, node: usize, row: NodeRow) -> Result<(), Error> {
        self.written.insert(node, row);
        Ok(())
    }

    fn add_row(&mut self, node: usize, row: NodeRow) -> Result<(), Error> {
        self.added.insert(node);
        self.written.insert(node, row);
        Ok(())
    }

    fn tally(&mut self) -> Result<Tally, Error> {
        Ok(self.tally_written.unwrap_or(self.tally))
    }

    fn set_tally(&mut self, tally: Tally) -> Result<(), Error> {
        self.tally_written = Some(tally);
        Ok(())
    }
}
