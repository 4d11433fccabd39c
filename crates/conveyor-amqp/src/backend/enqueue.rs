//! Enqueueing: new tasks checked against what a broker can keep, made
//! into messages with fresh ids, published and confirmed.

use conveyor_core::{Enqueued, Error, NewTask, TaskId, TaskRecord, Timestamp};

use super::publish::{publish_confirmed, Publish};
use super::Inner;
use crate::message::TaskMessage;
use crate::names::Names;
use crate::records;

impl Inner {
    /// Refuses what this backend cannot keep among `tasks`.
    pub(crate) fn check(&self, tasks: &[NewTask]) -> Result<(), Error> {
        self.value_limit.check_batch(tasks)?;
        for t in tasks {
            t.validate()?;
            Names::check_queue(&t.queue)?;
            let refuse = |what: &str| Err(conveyor_core::unsupported("amqp", what));
            if t.priority != 0 {
                return refuse("priorities (quorum queues deliver in order)");
            }
            if t.unique_key.is_some() {
                return refuse("unique keys (the broker keeps no task records)");
            }
            if t.ordering_key.is_some() {
                return refuse("ordering keys");
            }
            if t.keep.is_some() && self.records.is_none() {
                return refuse("a task's own keep without a result store (add results=redis://…)");
            }
        }
        Ok(())
    }

    /// New tasks as messages, each with a fresh id. Refuses what this
    /// backend cannot keep.
    pub(crate) fn messages(
        &self,
        tasks: Vec<NewTask>,
        now: Timestamp,
    ) -> Result<Vec<TaskMessage>, Error> {
        self.check(&tasks)?;
        Ok(tasks
            .into_iter()
            .map(|t| TaskMessage::new(new_id(), t, now))
            .collect())
    }

    /// Publishes `tasks` and waits for the broker to confirm them all.
    pub(super) async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        let now = self.clock.now();
        let messages = self.messages(tasks, now)?;
        let out = messages
            .iter()
            .map(|m| Enqueued {
                id: m.id,
                duplicate: false,
            })
            .collect();
        self.publish_new(messages, now).await?;
        Ok(out)
    }

    /// Publishes new tasks' `messages` and waits for the broker to confirm
    /// them all, their records kept first (and forgotten again when the
    /// publish fails).
    pub(crate) async fn publish_new(
        &self,
        messages: Vec<TaskMessage>,
        now: Timestamp,
    ) -> Result<(), Error> {
        if let Some(store) = &self.records {
            // Before the publish: a worker's later record must not be
            // overwritten by this one.
            let records: Vec<TaskRecord> =
                messages.iter().map(|m| records::waiting(m, now)).collect();
            store.put(&records).await?;
        }
        let publishes: Vec<Publish> = messages.into_iter().map(|m| self.route(m, now)).collect();
        let published = async {
            let link = self.link().await?;
            self.prepare(&link, &publishes.iter().collect::<Vec<_>>())
                .await?;
            publish_confirmed(&link, &publishes).await
        }
        .await;
        if let (Err(_), Some(store)) = (&published, &self.records) {
            let ids: Vec<TaskId> = publishes.iter().map(|p| p.message.id).collect();
            store.forget(&ids).await;
        }
        published
    }
}

/// A fresh task id: random, so processes need no coordination (63 bits).
pub(crate) fn new_id() -> TaskId {
    TaskId(fastrand::u64(1..=i64::MAX as u64))
}
