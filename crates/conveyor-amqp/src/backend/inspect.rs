//! Listing and counting tasks, through the store beside the broker: the
//! broker cannot list or count by task, but the record keeper indexes the
//! record this backend keeps for each task by queue and state
//! ([`RecordKeeper::list_kept`](conveyor_core::RecordKeeper::list_kept)).
//!
//! A listing or a count is only as fresh as the records (see `records`): a
//! report's record is at most one step ahead of its commit, a reservation's
//! may lag it, and a task the broker dead-lettered on its own
//! (`delivery_limit`) keeps its last record, running. Oldest first means in
//! the order the records were first kept (at enqueue): ids here are random.

use conveyor_core::{async_trait, Error, Inspection, ListParams, QueueStats, TaskRecord};

use super::AmqpBackend;
use crate::records::Records;

impl AmqpBackend {
    /// The store beside the broker, or the refusal of `what` without one.
    pub(crate) fn kept(&self, what: &str) -> Result<&Records, Error> {
        self.inner
            .records
            .as_ref()
            .ok_or_else(|| without_keeper(what))
    }
}

/// The refusal of `what` by a backend with no store keeping its records.
pub(crate) fn without_keeper(what: &str) -> Error {
    Error::Unsupported(format!(
        "the amqp backend does not support {what} on its own: RabbitMQ keeps \
         messages, not task records; give it a store that keeps them by adding \
         ?results=redis://HOST/DB?prefix=P to its URL"
    ))
}

#[async_trait]
impl Inspection for AmqpBackend {
    /// The records the keeper holds of this backend's tasks (see the module
    /// header for how fresh they are, and their order).
    async fn list(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        let records = self.kept("listing tasks")?;
        records.keeper()?.list_kept(params).await
    }

    /// Counts of the kept records per queue and state.
    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        let records = self.kept("counting tasks")?;
        records.keeper()?.kept_stats().await
    }
}
