//! Graphs read back from a store, kept by workflow. A declaration never
//! changes once stored, but expansions add nodes: a kept graph is right
//! for every node it has, and a store reads the graph again when it meets
//! a node past its end, before deciding an expansion, and for the
//! operations over every node (show, cancel, retry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::graph::Graph;
use super::stored;
use crate::Error;

/// How many graphs a [`Graphs`] keeps before it starts afresh.
const KEPT: usize = 256;

/// A bounded cache of decoded graphs, by workflow id.
#[derive(Debug, Default)]
pub struct Graphs(Mutex<HashMap<u64, Arc<Graph>>>);

impl Graphs {
    /// The graph of workflow `id`, if kept.
    pub fn get(&self, id: u64) -> Option<Arc<Graph>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Forgets workflow `id`'s graph (it grew elsewhere: the next read
    /// decodes it again).
    pub fn forget(&self, id: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Keeps `graph` as workflow `id`'s (all are dropped when the cache is
    /// full: the next reads decode them again).
    pub fn put(&self, id: u64, graph: Arc<Graph>) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(id, graph);
    }

    /// Decodes and checks workflow `id`'s stored declaration `bytes`, and
    /// keeps the graph.
    pub fn decode(&self, id: u64, bytes: &[u8]) -> Result<Arc<Graph>, Error> {
        self.decode_grown(id, bytes, [])
    }

    /// Decodes and checks workflow `id`'s stored declaration `bytes` with
    /// its stored `expansions` (in the order they were made), and keeps
    /// the graph.
    pub fn decode_grown<'a>(
        &self,
        id: u64,
        bytes: &[u8],
        expansions: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Arc<Graph>, Error> {
        let graph = Arc::new(
            stored::decode_graph(bytes, expansions)
                .map_err(|e| Error::backend_other(format!("workflow {id}'s stored graph: {e}")))?,
        );
        self.put(id, graph.clone());
        Ok(graph)
    }
}
