//! The store beside the broker as the store of workflow entries: entries
//! are the record keeper's versioned entries, a node's task is a message
//! published as an enqueue publishes one (its record first), and what it
//! left is read from its record.

use std::collections::HashMap;

use conveyor_core::workflow::entries::{EntryStore, NodeTask, PendingWatch, TaskOutput};
use conveyor_core::workflow::Graphs;
use conveyor_core::{
    async_trait, EntryWrite, Error, NewTask, RecordKeeper, TaskId, TaskState, Timestamp,
};

use crate::backend::{all, Inner};
use crate::message::TaskMessage;
use crate::records::Records;

/// The most bytes one entry holds: a workflow entry is about 2 bytes a
/// node, and a declaration is split into parts of this size.
const ENTRY_LIMIT: usize = 512 * 1024;

impl Inner {
    /// The store keeping the records (workflows are refused without one
    /// before they reach here).
    fn keeping(&self) -> Result<&Records, Error> {
        self.records
            .as_ref()
            .ok_or_else(|| crate::backend::without_keeper("workflows"))
    }

    fn entries(&self) -> Result<&dyn RecordKeeper, Error> {
        self.keeping()?.keeper()
    }
}

#[async_trait]
impl EntryStore for Inner {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn graphs(&self) -> &Graphs {
        &self.graphs
    }

    fn entry_limit(&self) -> usize {
        ENTRY_LIMIT
    }

    async fn entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error> {
        self.entries()?.kept_entry(key).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>, Error> {
        self.entries()?
            .write_entry(key, &value, EntryWrite::Create)
            .await
    }

    async fn cas(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<Option<u64>, Error> {
        self.entries()?
            .write_entry(key, &value, EntryWrite::Swap(rev))
            .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.entries()?
            .write_entry(key, &value, EntryWrite::Put)
            .await
            .map(drop)
    }

    async fn remove(&self, key: &str) -> Result<(), Error> {
        self.entries()?.remove_entry(key).await
    }

    async fn scan_flows(&self) -> Result<Vec<(String, Vec<u8>, u64)>, Error> {
        self.entries()?.kept_entries("f.").await
    }

    async fn next_flow_id(&self) -> Result<u64, Error> {
        self.entries()?.count_up("flows", 1).await
    }

    /// Random, as every task id here is (63 bits): a block of `n` in a row.
    async fn alloc_ids(&self, n: u64) -> Result<u64, Error> {
        let top = (i64::MAX as u64).saturating_sub(n).max(2);
        Ok(fastrand::u64(1..top))
    }

    /// What an enqueue refuses (the composed params' size included).
    fn check_task(&self, task: &NewTask) -> Result<(), Error> {
        self.keeping()?;
        self.check(std::slice::from_ref(task))
    }

    /// Nothing more than [`EntryStore::check_task`]: a message carries the
    /// params alone.
    fn check_node_task(&self, _task: &NodeTask) -> Result<(), Error> {
        Ok(())
    }

    async fn create_tasks(&self, tasks: Vec<NodeTask>) -> Result<(), Error> {
        let now = self.now();
        let messages = tasks
            .into_iter()
            .map(|t| {
                let mut m = TaskMessage::new(TaskId(t.id), t.task, now);
                m.node = Some(t.link);
                m
            })
            .collect();
        self.publish_new(messages, now).await
    }

    async fn outputs(&self, ids: &[u64]) -> Result<HashMap<u64, TaskOutput>, Error> {
        let store = self.keeping()?.store()?;
        let reads: Vec<_> = ids.iter().map(|&id| store.get(TaskId(id))).collect();
        let mut out = HashMap::with_capacity(ids.len());
        for (id, got) in ids.iter().zip(all(reads).await) {
            if let Some(r) = got? {
                out.insert(*id, (r.result, r.error));
            }
        }
        Ok(out)
    }

    /// Records the task as cancelled, unless it has ended: a reservation
    /// that meets its message acks it without running it, and a report of
    /// it running is refused (`backend::settle`).
    async fn cancel_task(&self, id: u64) -> Result<(), Error> {
        let records = self.keeping()?;
        let Some(mut record) = records.store()?.get(TaskId(id)).await? else {
            return Ok(());
        };
        if record.state.is_finished() {
            return Ok(());
        }
        let now = self.now();
        record.state = TaskState::Cancelled;
        record.finished_at = Some(now);
        record.error = Some("its workflow was cancelled".into());
        records.put(&[record]).await
    }

    async fn remove_tasks(&self, ids: &[u64]) -> Result<(), Error> {
        let ids: Vec<TaskId> = ids.iter().map(|&id| TaskId(id)).collect();
        self.entries()?.forget(&ids).await
    }

    /// A message published twice runs twice: maintenance waits a pass.
    fn pending_watch(&self) -> Option<&PendingWatch> {
        Some(&self.pending)
    }
}
