//! The record keeper part: a store that keeps whole task records written by
//! another backend, so a broker that keeps messages and not records
//! (RabbitMQ) has results, `wait()` and `conveyor show` through a store that
//! already keeps records of its own (Redis), in that store's own format.

use async_trait::async_trait;

use super::{ListParams, Retention};
use crate::durable_task::{QueueStats, TaskRecord};
use crate::task::TaskId;
use crate::task_state::TaskState;
use crate::Error;

/// Keeps task records another backend writes, whole, and reads them back
/// through the keeper's own [`ResultStore`](super::ResultStore) (`get`,
/// finish notifications), so they are found, waited on and shown as its own
/// tasks are.
///
/// A kept record is only a record: the keeper never reserves, recovers,
/// cancels or requeues it (the backend that wrote it holds the task), its
/// own listings and counts ([`Inspection`](super::Inspection)) never show
/// one, and its own tasks are never overwritten by one (a record whose id is
/// one of the keeper's own tasks is refused). The kept records are listed
/// and counted apart, by queue and state, for the backend that wrote them
/// ([`RecordKeeper::list_kept`], [`RecordKeeper::kept_stats`]); those never
/// show the keeper's own tasks. Each record
/// expires on its own: a finished one the retention for its state after it
/// was kept (by the keeper's clock), an unfinished one (its writer may never
/// write again: a broker that dead-letters a task on its own) the retention
/// of dead tasks after it was due.
#[async_trait]
pub trait RecordKeeper: Send + Sync {
    /// Writes each of `records` whole, replacing what was kept under its id
    /// (a field a record does not have, such as a result, is removed), in
    /// one step for all of them; the finished ones' waiters are woken. Each
    /// expires as `retention` says (see the trait's documentation).
    async fn keep(&self, records: &[TaskRecord], retention: Retention) -> Result<(), Error>;

    /// Removes the kept records of `ids` (of tasks whose enqueue failed);
    /// an id with no kept record is skipped, and the keeper's own tasks are
    /// never touched.
    async fn forget(&self, ids: &[TaskId]) -> Result<(), Error>;

    /// The kept records `params` lists, as
    /// [`Inspection::list`](super::Inspection::list) lists tasks: of its
    /// state (and queue and handler), in its order, at most its limit,
    /// after its cursor. Oldest first means in the order the records were
    /// first kept (the writer's ids need not grow with time); the cursor is
    /// a kept record, and one no longer kept (expired, forgotten or purged
    /// since) is an error saying to list again from the start. Records past
    /// their expiry are never listed.
    async fn list_kept(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error>;

    /// The kept records' counts per queue and state, as
    /// [`Inspection::stats`](super::Inspection::stats) counts tasks: one row
    /// per queue a record was kept for, sorted by name, with when its oldest
    /// available record became ready.
    async fn kept_stats(&self) -> Result<Vec<QueueStats>, Error>;

    /// Removes every kept record in `state`, of `queue` (`None`: of every
    /// queue), returning how many; the keeper's own tasks are never touched.
    async fn purge_kept(&self, state: TaskState, queue: Option<&str>) -> Result<u64, Error>;

    /// Removes every kept record past its expiry now, returning how many.
    /// Writes drop a batch of them too, so they do not pile up while
    /// records are kept; this is for a writer that has gone quiet (its
    /// backend's maintenance calls it).
    async fn expire_kept(&self) -> Result<u64, Error>;

    /// The versioned entry `key` kept for the writer (the state it keeps
    /// beside its records: a broker's workflows) and its revision; `None`
    /// when there is none. Entries never expire: the writer removes them.
    async fn kept_entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error>;

    /// Writes `value` under entry `key` as `when` allows, in one atomic
    /// step; the entry's new revision (growing with each write), or `None`
    /// when `when` refused (it existed, or moved on since).
    async fn write_entry(
        &self,
        key: &str,
        value: &[u8],
        when: EntryWrite,
    ) -> Result<Option<u64>, Error>;

    /// Removes entry `key` (nothing when there is none).
    async fn remove_entry(&self, key: &str) -> Result<(), Error>;

    /// Every kept entry whose key starts with `prefix`: its key, value and
    /// revision.
    async fn kept_entries(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>, u64)>, Error>;

    /// Adds `n` to the counter `name` (0 at first) and returns its new
    /// value: ids no other call is given.
    async fn count_up(&self, name: &str, n: u64) -> Result<u64, Error>;
}

/// When [`RecordKeeper::write_entry`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryWrite {
    /// Only when there is no entry yet.
    Create,
    /// Only while the entry is at this revision.
    Swap(u64),
    /// Whatever is there.
    Put,
}
