//! [`CutShort`]: a workflow or schedule entry store whose process "dies"
//! right after a compare-and-set that decided tasks (a settle's, a fire's),
//! before they are created, to test the crash windows of
//! `conveyor_core::workflow::entries` and `conveyor_core::schedule::entries`
//! on a real store.

use std::collections::HashMap;

use conveyor_core::schedule::entries::ScheduleEntries;
use conveyor_core::workflow::entries::{EntryStore, NodeTask, PendingWatch, TaskOutput};
use conveyor_core::workflow::Graphs;
use conveyor_core::{async_trait, Error, NewTask, TaskId, Timestamp};

/// `store`, except that creating node tasks or fires fails (as if the
/// process died there): whatever the entry decided stays pending.
pub struct CutShort<'a, S: ?Sized>(pub &'a S);

#[async_trait]
impl<S: EntryStore + ?Sized> EntryStore for CutShort<'_, S> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn now(&self) -> Timestamp {
        self.0.now()
    }
    fn graphs(&self) -> &Graphs {
        self.0.graphs()
    }
    fn entry_limit(&self) -> usize {
        self.0.entry_limit()
    }
    async fn entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error> {
        self.0.entry(key).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>, Error> {
        self.0.create(key, value).await
    }
    async fn cas(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<Option<u64>, Error> {
        self.0.cas(key, value, rev).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.0.put(key, value).await
    }
    async fn remove(&self, key: &str) -> Result<(), Error> {
        self.0.remove(key).await
    }
    async fn scan_flows(&self) -> Result<Vec<(String, Vec<u8>, u64)>, Error> {
        self.0.scan_flows().await
    }
    async fn next_flow_id(&self) -> Result<u64, Error> {
        self.0.next_flow_id().await
    }
    async fn alloc_ids(&self, n: u64) -> Result<u64, Error> {
        self.0.alloc_ids(n).await
    }
    fn check_task(&self, task: &NewTask) -> Result<(), Error> {
        self.0.check_task(task)
    }
    fn check_node_task(&self, task: &NodeTask) -> Result<(), Error> {
        self.0.check_node_task(task)
    }
    /// Dies here: nothing is created.
    async fn create_tasks(&self, _tasks: Vec<NodeTask>) -> Result<(), Error> {
        Err(Error::backend_other(
            "the process died before creating the tasks",
        ))
    }
    async fn outputs(&self, ids: &[u64]) -> Result<HashMap<u64, TaskOutput>, Error> {
        self.0.outputs(ids).await
    }
    async fn cancel_task(&self, id: u64) -> Result<(), Error> {
        self.0.cancel_task(id).await
    }
    async fn remove_tasks(&self, ids: &[u64]) -> Result<(), Error> {
        self.0.remove_tasks(ids).await
    }
    fn pending_watch(&self) -> Option<&PendingWatch> {
        self.0.pending_watch()
    }
}

#[async_trait]
impl<S: ScheduleEntries + ?Sized> ScheduleEntries for CutShort<'_, S> {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
    fn schedule_key(&self, name: &str) -> String {
        self.0.schedule_key(name)
    }
    async fn entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error> {
        ScheduleEntries::entry(self.0, key).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>, Error> {
        ScheduleEntries::create(self.0, key, value).await
    }
    async fn cas(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<Option<u64>, Error> {
        ScheduleEntries::cas(self.0, key, value, rev).await
    }
    async fn remove(&self, key: &str) -> Result<(), Error> {
        ScheduleEntries::remove(self.0, key).await
    }
    async fn scan_schedules(&self) -> Result<Vec<(String, Vec<u8>, u64)>, Error> {
        self.0.scan_schedules().await
    }
    async fn alloc_ids(&self, n: u64) -> Result<u64, Error> {
        ScheduleEntries::alloc_ids(self.0, n).await
    }
    /// Dies here: nothing is created.
    async fn create_fires(&self, _fires: Vec<(u64, NewTask)>) -> Result<Vec<TaskId>, Error> {
        Err(Error::backend_other(
            "the process died before creating the fires",
        ))
    }
    async fn running(&self, id: TaskId) -> Result<bool, Error> {
        self.0.running(id).await
    }
}
