//! Graphs read back from a store, kept by workflow: a declaration never
//! changes once stored, so a graph any process read stays right.

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
        let graph = Arc::new(
            stored::decode(bytes)?
                .validate()
                .map_err(|e| Error::backend_other(format!("workflow {id}'s stored graph: {e}")))?,
        );
        self.put(id, graph.clone());
        Ok(graph)
    }
}
