//! The record keeper part: a store that keeps whole task records written by
//! another backend, so a broker that keeps messages and not records
//! (RabbitMQ) has results, `wait()` and `conveyor show` through a store that
//! already keeps records of its own (Redis), in that store's own format.

use async_trait::async_trait;

use super::Retention;
use crate::durable_task::TaskRecord;
use crate::task::TaskId;
use crate::Error;

/// Keeps task records another backend writes, whole, and reads them back
/// through the keeper's own [`ResultStore`](super::ResultStore) (`get`,
/// finish notifications), so they are found, waited on and shown as its own
/// tasks are.
///
/// A kept record is only a record: the keeper never reserves, recovers,
/// lists, counts, cancels or requeues it (the backend that wrote it holds
/// the task), and its own tasks are never overwritten by one (a record
/// whose id is one of the keeper's own tasks is refused). Each record
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
}
