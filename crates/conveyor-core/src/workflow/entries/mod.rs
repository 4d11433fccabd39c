//! Workflows kept in a store of versioned entries: one implementation of
//! the [`Workflows`](crate::Workflows) part for every backend whose store
//! changes one key at a time by compare-and-set ([`EntryStore`]) — NATS in
//! its key-value ledger, RabbitMQ in the store beside its broker.
//!
//! A workflow is one entry (`f.<id>`, the `entry` module) with every node's state,
//! beside its declaration (`fd.<id>.<k>`, split to fit the store's entry
//! size) and the expansions its nodes made (`fg.<id>.<node>.<k>`); each
//! node's task is an ordinary task of the backend that names its node
//! ([`NodeLink`]).
//!
//! Such a store changes one key at a time, so a node task's end and its
//! node's settle are two writes, made safe by their order ([`settle`]):
//! the end is written, then settled, then the task's message is acked. A
//! crash in between leaves the message unacked, and whoever meets the
//! finished task again (the redelivery, lease recovery, maintenance)
//! settles it; a node settles only while it runs under that very task, so
//! once however often its end is heard. The nodes a settle makes ready are
//! written pending with their task ids in the same compare-and-set, and
//! their tasks created after it, so a crash there creates them later,
//! under the same ids.
//!
//! A node's task is kept as long as its workflow (its dependents read its
//! result from its record), and goes with it when maintenance prunes it
//! ([`prune`]).

mod entry;
mod ops;
mod settle;
mod submit;
mod view;

use std::collections::HashMap;

use async_trait::async_trait;

use super::Graphs;
use crate::{Error, NewTask, Timestamp};

pub use ops::{cancel, retry};
pub use settle::{settle, Ended};
pub use submit::submit;
pub use view::{list, prune, read};

/// The link from a node's task to its node: workflow `flow`'s node `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeLink {
    /// The workflow.
    pub flow: u64,
    /// The node's position in the workflow's graph.
    pub node: u32,
}

/// A node's task to create: `task` under id `id`, linked to its node.
#[derive(Debug, Clone)]
pub struct NodeTask {
    /// The id decided for it when its node became ready.
    pub id: u64,
    /// Its node.
    pub link: NodeLink,
    /// The task, its params composed from its dependencies' results.
    pub task: NewTask,
}

/// What a node's task left: its result and its error.
pub type TaskOutput = (Option<Vec<u8>>, Option<String>);

/// A store of versioned entries that keeps workflows, and the backend
/// whose tasks their nodes run as.
///
/// Every entry has a revision that grows with each write; `cas` writes only
/// at the revision read, so two writers of one workflow never both write
/// from the same read. Keys are short ASCII strings with dots
/// (`f.12`, `fd.12.0`).
#[async_trait]
pub trait EntryStore: Send + Sync {
    /// The backend's kind, for messages.
    fn kind(&self) -> &'static str;

    /// The backend's clock.
    fn now(&self) -> Timestamp;

    /// The graphs this process keeps decoded.
    fn graphs(&self) -> &Graphs;

    /// The most bytes one entry may hold.
    fn entry_limit(&self) -> usize;

    /// The entry under `key` and its revision; `None` when there is none.
    async fn entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error>;

    /// Creates `key` with `value`; its revision, or `None` when it exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>, Error>;

    /// Writes `value` under `key` if it is still at `rev`; the new
    /// revision, or `None` when another write came first.
    async fn cas(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<Option<u64>, Error>;

    /// Writes `value` under `key`, whatever is there.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error>;

    /// Removes `key` (nothing when it is not there).
    async fn remove(&self, key: &str) -> Result<(), Error>;

    /// Every workflow entry (`f.<id>`): its key, value and revision.
    async fn scan_flows(&self) -> Result<Vec<(String, Vec<u8>, u64)>, Error>;

    /// A fresh workflow id, never given before.
    async fn next_flow_id(&self) -> Result<u64, Error>;

    /// The first of `n` fresh task ids in a row, never given before.
    async fn alloc_ids(&self, n: u64) -> Result<u64, Error>;

    /// Refuses a task this backend cannot enqueue (what its enqueue would
    /// refuse), before a workflow is stored.
    fn check_task(&self, task: &NewTask) -> Result<(), Error>;

    /// Refuses a node's task this backend cannot hold (its composed params
    /// too large), before it is created: its node fails with the reason.
    fn check_node_task(&self, task: &NodeTask) -> Result<(), Error>;

    /// Creates `tasks`, each under its id. Creating one that exists (a
    /// crash after its creation, before its node was taken off the pending
    /// list) must not lose it, and should not run it twice.
    async fn create_tasks(&self, tasks: Vec<NodeTask>) -> Result<(), Error>;

    /// What each of `ids` left, of those whose tasks are kept.
    async fn outputs(&self, ids: &[u64]) -> Result<HashMap<u64, TaskOutput>, Error>;

    /// Cancels task `id` (nothing when it has ended or is not there).
    async fn cancel_task(&self, id: u64) -> Result<(), Error>;

    /// Removes the tasks of `ids` that are kept.
    async fn remove_tasks(&self, ids: &[u64]) -> Result<(), Error>;

    /// `None` when creating a node's task twice (under its id) creates it
    /// once, so maintenance's pass may create what a settle left pending
    /// at once. Otherwise the watch that makes the pass wait: it creates a
    /// pending node's task only once it finds the workflow's entry pending
    /// at the same revision as on its pass before, so it does not race a
    /// live settle creating the same task.
    fn pending_watch(&self) -> Option<&PendingWatch> {
        None
    }
}

/// The workflows maintenance found with nodes pending, each at its entry's
/// revision, on its last pass (see [`EntryStore::pending_watch`]); and the
/// pending nodes whose creation failed in this process, which the next
/// settle of their workflow here creates (the report that made them ready
/// is sent again when its settle fails, and finds nothing left to decide).
#[derive(Debug, Default)]
pub struct PendingWatch {
    seen: std::sync::Mutex<HashMap<u64, u64>>,
    owed: std::sync::Mutex<HashMap<u64, std::collections::HashSet<u32>>>,
}

impl PendingWatch {
    /// Notes that creating `nodes` of workflow `flow` failed here.
    pub fn owe(&self, flow: u64, nodes: impl IntoIterator<Item = u32>) {
        let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
        owed.entry(flow).or_default().extend(nodes);
    }

    /// The nodes of `flow` whose creation failed here and is not done yet.
    pub fn owed(&self, flow: u64) -> Vec<u32> {
        let owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
        owed.get(&flow)
            .map(|n| n.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Notes that `nodes` of workflow `flow` were created (and taken off
    /// its pending list).
    pub fn paid(&self, flow: u64, nodes: impl IntoIterator<Item = u32>) {
        let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = owed.get_mut(&flow) {
            for n in nodes {
                set.remove(&n);
            }
            if set.is_empty() {
                owed.remove(&flow);
            }
        }
    }

    /// A pass found `pending` (workflow, revision): the workflows pending at
    /// the same revision on the pass before, which no settle is creating.
    pub fn pass(&self, pending: &[(u64, u64)]) -> Vec<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let stale = pending
            .iter()
            .filter(|(flow, rev)| seen.get(flow) == Some(rev))
            .map(|(flow, _)| *flow)
            .collect();
        *seen = pending.iter().copied().collect();
        stale
    }
}

/// The keys of a workflow's entries.
pub(crate) mod keys {
    /// A workflow's entry (its nodes' states).
    pub(crate) fn flow(id: u64) -> String {
        format!("f.{id}")
    }

    /// The workflow whose entry is `key`.
    pub(crate) fn flow_of(key: &str) -> Option<u64> {
        key.strip_prefix("f.")?.parse().ok()
    }

    /// Part `k` of a workflow's declaration.
    pub(crate) fn flow_spec(id: u64, k: u32) -> String {
        format!("fd.{id}.{k}")
    }

    /// Part `k` of the expansion workflow `id`'s node `node` made.
    pub(crate) fn flow_growth(id: u64, node: u32, k: u32) -> String {
        format!("fg.{id}.{node}.{k}")
    }
}

/// Runs `futures` together (their requests go out at once): the outputs,
/// in order.
async fn all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    futures_util::future::join_all(futures).await
}

/// The refusal of data in the store that does not read.
fn bad_data(kind: &str, message: impl std::fmt::Display) -> Error {
    Error::backend(crate::BackendErrorKind::Data, format!("{kind}: {message}"))
}
