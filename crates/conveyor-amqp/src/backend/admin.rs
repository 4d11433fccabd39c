//! Requeueing and purging dead tasks, with the store beside the broker.
//!
//! A task dies here by its worker's report (a dead letter, or a retry on its
//! last attempt), which writes its record dead and then publishes it into
//! its queue's dead queue, `P.dead.QUEUE`, in the commit that acknowledges
//! it; or by the broker, which dead-letters into the same queue a task that
//! kept killing its workers (`delivery_limit`; its record stays running).
//! The dead queue's copy is what proves a task dead: a dead record may be
//! one step ahead of a commit that never applied (see `records`), its task
//! then still waiting in its work queue.
//!
//! **Requeue** reads the records of the ids asked for and keeps the dead
//! ones; for each of their queues it takes the dead queue's messages one by
//! one (`basic.get`, unacknowledged) until it found them all or the queue
//! has no more. What it was not asked for stays unacknowledged until the
//! end, then goes back to the dead queue with its channel. Each task found
//! is published again from its dead copy (which carries everything, its
//! timeout and trace context too), due now, its attempts reset and its last
//! error kept, and confirmed by the broker; then its record is kept as
//! available; then every dead copy of it is acknowledged (gone). A dead
//! record whose copy is not in the dead queue is not requeued: it may not be
//! dead.
//!
//! What a crash leaves, at each point (at least once, never lost):
//! - before the confirm: the dead copy goes back to the dead queue and the
//!   record says dead; the publish may still have reached the broker, and
//!   then the task runs and is dead-listed until its reservation's record;
//!   requeued again meanwhile, it runs twice;
//! - after the confirm, before the record: the same, the task surely
//!   queued: requeueing it again before a worker takes it runs it twice;
//! - after the record, before the acknowledgement: the dead copy goes back
//!   to the dead queue but the record says available, so it is neither
//!   listed nor requeued again; a purge of the queue removes it.
//!
//! A record that cannot be written after the confirm does not stop the
//! acknowledgement (the task is queued, its dead copy must go); the call
//! then fails saying so, and the record says dead until a worker takes the
//! task.
//!
//! **Purge** removes the dead records (of a queue, or of every queue a record
//! was kept for), then empties those queues' dead queues on the broker, the
//! copies of tasks it dead-lettered on its own included. It returns how
//! many dead records went.
//!
//! **Cancel** is refused: a message waiting in a quorum queue cannot be taken
//! out of it, and a cancel that marks the record for reservations to drop
//! would need every reservation to read the record before it hands the task
//! out, which a reservation here does not wait for (its record is written
//! after, and skipped when the store does not answer).

use std::collections::{BTreeMap, HashSet};

use conveyor_core::{async_trait, Administration, Error, TaskId, TaskRecord, TaskState, Timestamp};
use lapin::options::BasicGetOptions;
use lapin::Channel;

use super::publish::{ack, publish_confirmed, Publish};
use super::{AmqpBackend, Inner};
use crate::link::Link;
use crate::message::TaskMessage;
use crate::records::{self, Records};

/// Dead copies of the tasks a requeue looks for, found in one dead queue.
#[derive(Default)]
struct Found {
    /// The first copy of each task, to publish again.
    first: Vec<TaskMessage>,
    /// The delivery tags of every copy of each found task.
    tags: Vec<u64>,
}

impl Inner {
    /// Takes the dead copies of `want` out of `queue`'s dead queue on
    /// `channel` (unacknowledged), stopping when all are found or the queue
    /// has no more. Everything else it took stays unacknowledged.
    async fn find_dead(
        &self,
        link: &Link,
        channel: &Channel,
        queue: &str,
        want: &HashSet<TaskId>,
    ) -> Result<Found, Error> {
        let dead = self.names.dead(queue);
        let mut found = Found::default();
        let mut seen: HashSet<TaskId> = HashSet::new();
        loop {
            if seen.len() == want.len() {
                return Ok(found);
            }
            let got = unless_missing(
                link,
                "basic.get",
                channel.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: false }),
            )
            .await?;
            // No more, or no dead queue: nothing died in this queue yet.
            let Some(Some(got)) = got else {
                return Ok(found);
            };
            let d = got.delivery;
            // A message that does not decode is not one of ours to requeue.
            let Ok(m) = TaskMessage::decode(&d.properties, d.data) else {
                continue;
            };
            if !want.contains(&m.id) {
                continue;
            }
            found.tags.push(d.delivery_tag);
            if seen.insert(m.id) {
                found.first.push(m);
            }
        }
    }

    /// Requeues the dead tasks `want` of `queue` (see the module header).
    async fn requeue_queue(
        &self,
        records: &Records,
        queue: &str,
        want: &HashSet<TaskId>,
    ) -> Result<u64, Error> {
        let link = self.link().await?;
        let channel = link.channel().await?;
        let outcome = self.requeue_on(records, &link, &channel, queue, want).await;
        // What was taken and not acknowledged goes back to the dead queue.
        let _ = channel.close(200, "".into()).await;
        outcome
    }

    async fn requeue_on(
        &self,
        records: &Records,
        link: &Link,
        channel: &Channel,
        queue: &str,
        want: &HashSet<TaskId>,
    ) -> Result<u64, Error> {
        let found = self.find_dead(link, channel, queue, want).await?;
        if found.first.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let again: Vec<TaskMessage> = found
            .first
            .into_iter()
            .map(|mut m| {
                m.attempts = 0;
                m.due_at = Timestamp(now.0);
                m
            })
            .collect();
        let kept: Vec<TaskRecord> = again.iter().map(|m| records::waiting(m, now)).collect();
        let publishes: Vec<Publish> = again.into_iter().map(|m| self.route(m, now)).collect();
        self.prepare(link, &publishes.iter().collect::<Vec<_>>())
            .await?;
        publish_confirmed(link, &publishes).await?;
        let written = records.put(&kept).await;
        for tag in &found.tags {
            ack(&link.health, channel, *tag).await?;
        }
        let n = kept.len() as u64;
        written.map_err(|e| {
            Error::backend(
                e.backend_kind()
                    .unwrap_or(conveyor_core::BackendErrorKind::Other),
                format!(
                    "requeued {n} dead tasks of queue {queue}, but their records could not \
                     be written (they read dead until a worker takes them): {}",
                    e.chain()
                ),
            )
        })?;
        Ok(n)
    }

    /// Empties `queue`'s dead queue on the broker; a queue never declared
    /// has nothing to empty.
    async fn purge_dead_queue(&self, link: &Link, queue: &str) -> Result<(), Error> {
        let dead = self.names.dead(queue);
        let channel = link.channel().await?;
        let purged = unless_missing(
            link,
            "queue.purge",
            channel.queue_purge(dead.as_str().into(), Default::default()),
        )
        .await;
        let _ = channel.close(200, "".into()).await;
        purged.map(drop)
    }
}

/// Waits for `request` at most [`ANSWER_WITHIN`](crate::answer::ANSWER_WITHIN)
/// (as [`answer`](crate::answer::answer) does): `None` when the broker
/// answers that its queue does not exist (which closes the channel).
async fn unless_missing<T>(
    link: &Link,
    what: &str,
    request: impl std::future::Future<Output = lapin::Result<T>>,
) -> Result<Option<T>, Error> {
    match tokio::time::timeout(crate::answer::ANSWER_WITHIN, request).await {
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(e)) if e.to_string().contains("NOT_FOUND") => Ok(None),
        Ok(Err(e)) => Err(crate::error::amqp_error(what, e)),
        Err(_) => {
            link.health.set_broken();
            Err(crate::answer::no_answer(what))
        }
    }
}

#[async_trait]
impl Administration for AmqpBackend {
    /// Refused (see the module header): a waiting RabbitMQ message cannot be
    /// taken back.
    async fn cancel(&self, _id: TaskId) -> Result<TaskState, Error> {
        Err(Error::Unsupported(
            "the amqp backend does not support cancelling a task: a message waiting \
             in a RabbitMQ quorum queue cannot be taken out of it, and reservations \
             do not read the task's record before handing it out"
                .to_string(),
        ))
    }

    /// Requeues the tasks of `ids` whose record is dead and whose dead copy
    /// is in their dead queue (see the module header); returns how many.
    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        let records = self.kept("requeueing dead tasks")?;
        let store = records.store()?;
        let mut by_queue: BTreeMap<String, HashSet<TaskId>> = BTreeMap::new();
        let mut asked = HashSet::new();
        for id in ids {
            if !asked.insert(*id) {
                continue;
            }
            if let Some(r) = store.get(*id).await? {
                if r.state == TaskState::Dead {
                    by_queue.entry(r.queue).or_default().insert(*id);
                }
            }
        }
        let mut moved = 0;
        for (queue, want) in &by_queue {
            moved += self.inner.requeue_queue(records, queue, want).await?;
        }
        Ok(moved)
    }

    /// Removes the dead records of `queue` (`None`: of every queue a record
    /// was kept for), then empties those dead queues on the broker; returns
    /// how many records went.
    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        let records = self.kept("purging dead tasks")?;
        let keeper = records.keeper()?;
        let queues: Vec<String> = match queue {
            Some(q) => vec![q.to_string()],
            None => keeper
                .kept_stats()
                .await?
                .into_iter()
                .map(|s| s.queue)
                .collect(),
        };
        let n = keeper.purge_kept(TaskState::Dead, queue).await?;
        let link = self.inner.link().await?;
        for q in &queues {
            self.inner.purge_dead_queue(&link, q).await?;
        }
        Ok(n)
    }
}
