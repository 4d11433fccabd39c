//! Workflows on RabbitMQ (the [`Workflows`] part), kept in the store beside
//! the broker by `conveyor_core::workflow::entries` (one implementation for
//! every backend whose store changes one key at a time): a workflow is one
//! versioned entry in the record keeper (`f.<id>`, with its declaration
//! beside it), and each node's task an ordinary message that names its node
//! (the `conveyor-node` header), whose record the keeper holds like any
//! other task's.
//!
//! A node task's report writes its record, then settles its node (a
//! compare-and-set on the workflow's entry, creating the tasks it made
//! ready: their records, then their messages, confirmed), then commits its
//! ack (`backend::settle`). A process that dies before the commit leaves
//! the delivery to come back: the reservation that meets a node task whose
//! record has ended settles it (once: a node settles only while it runs
//! under that very task) and acks it instead of running it again
//! (`reserve.rs`). A settle cut short after its compare-and-set leaves the
//! nodes it made ready pending: the next settle of the workflow creates
//! them, or maintenance's pass once it finds them pending unchanged a
//! minute later (a message published twice would run twice).
//!
//! Without a store beside the broker there is nowhere to keep a workflow:
//! the part is refused with the reason.

mod store;
#[cfg(test)]
mod tests;

use conveyor_core::workflow::entries;
use conveyor_core::workflow::{
    Retried, Submitted, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowSummary,
};
use conveyor_core::{async_trait, Error, Retention, Workflows};

use crate::backend::AmqpBackend;

impl AmqpBackend {
    /// Maintenance's pass over the workflows, as every backend with a
    /// store beside the broker runs it once a minute: drops those that
    /// ended before `retention` (a succeeded one after the finished
    /// tasks', a failed or cancelled one after the dead tasks'), their
    /// tasks' records first, and creates the tasks a crash left pending in
    /// the others, once found so unchanged on the pass before. How many it
    /// dropped.
    pub async fn prune_workflows(&self, retention: Retention) -> Result<u64, Error> {
        self.kept("workflows")?;
        entries::prune(&*self.inner, retention).await
    }
}

#[async_trait]
impl Workflows for AmqpBackend {
    async fn submit(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        self.kept("workflows")?;
        entries::submit(&*self.inner, spec).await
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error> {
        self.kept("workflows")?;
        entries::read(&*self.inner, id).await
    }

    async fn cancel_workflow(&self, id: WorkflowId) -> Result<Option<u64>, Error> {
        self.kept("workflows")?;
        entries::cancel(&*self.inner, id).await
    }

    async fn retry_workflow(&self, id: WorkflowId) -> Result<Option<Retried>, Error> {
        self.kept("workflows")?;
        entries::retry(&*self.inner, id).await
    }

    async fn list_workflows(&self, filter: &WorkflowFilter) -> Result<Vec<WorkflowSummary>, Error> {
        self.kept("workflows")?;
        entries::list(&*self.inner, filter).await
    }
}
