//! The administration part: cancel waiting or running tasks, requeue and
//! purge dead ones. Each change is a compare-and-set on the record; the
//! messages of a cancelled task are left where they are and dropped by
//! whoever receives them (the record says it is finished), so cancelling
//! costs no stream operation. A running task's worker finds its renewal
//! and its report refused (the record no longer runs), stops the attempt,
//! and its unacked message comes back to be dropped the same way. A
//! requeue publishes the task's next ready message before it writes the
//! record, like every transition that makes a task runnable.

use conveyor_core::async_trait;
use conveyor_core::{
    Administration, AttemptOutcome, Error, TaskId, TaskState, Transition, CANCELLED_WHILE_RUNNING,
};

use crate::backend::NatsBackend;
use crate::names::keys;
use crate::record::Rec;
use crate::workflows::ended;

impl NatsBackend {
    /// Removes the records of `recs` and the unique-key claims they hold;
    /// how many records went.
    pub(crate) async fn remove_tasks(&self, recs: &[Rec]) -> Result<u64, Error> {
        let ledger = &self.inner.ledger;
        let jobs: Vec<_> = recs
            .iter()
            .map(|rec| async move {
                if let Some(k) = &rec.unique_key {
                    let key = keys::claim(&rec.queue, k);
                    if let Some((value, _)) = ledger.entry(&key).await? {
                        if value.as_ref() == rec.id.to_string().as_bytes() {
                            ledger.remove(&key).await?;
                        }
                    }
                }
                ledger.remove(&keys::task(rec.id)).await
            })
            .collect();
        let removed = crate::backend::all(jobs).await;
        let mut n = 0;
        for r in removed {
            r?;
            n += 1;
        }
        Ok(n)
    }

    async fn requeue_one(&self, id: TaskId) -> Result<bool, Error> {
        let ledger = &self.inner.ledger;
        for _ in 0..16 {
            let Some((rec, rev)) = ledger.get(id.0).await? else {
                return Ok(false);
            };
            if rec.state() != TaskState::Dead {
                return Ok(false);
            }
            if let Some(k) = &rec.unique_key {
                if self
                    .claim(&keys::claim(&rec.queue, k), rec.id)
                    .await?
                    .is_some()
                {
                    return Ok(false);
                }
            }
            let mut new = rec.clone();
            new.apply(Transition::Requeue)?;
            new.attempts = 0;
            new.finished_at = None;
            new.expires_at = None;
            new.run_at = new.run_at.min(self.now().as_millis());
            new.dispatch = rec.dispatch + 1;
            new.msg_seq = None;
            let out = self.dispatch_for(&new, new.dispatch, false);
            self.inner.streams.publish(&[out]).await?;
            if ledger.cas_rec(&new, rev).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl Administration for NatsBackend {
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        let ledger = &self.inner.ledger;
        for _ in 0..16 {
            let Some((rec, rev)) = ledger.get(id.0).await? else {
                return Err(Error::NotFound(id));
            };
            if !Transition::Cancel.sources().contains(&rec.state()) {
                return Ok(rec.state());
            }
            let now = self.now();
            let mut new = rec;
            if new.state() == TaskState::Running {
                // Its attempt ends here, and its lease with it: the worker's
                // renewal and report are refused from now on.
                new.settle_attempt(AttemptOutcome::Cancelled, now);
                new.error = Some(CANCELLED_WHILE_RUNNING.to_string());
                new.lease_until = None;
            }
            new.apply(Transition::Cancel)?;
            new.finished(now, None);
            if ledger.cas_rec(&new, rev).await?.is_some() {
                if let Some(node) = ended(&new) {
                    // Cut short, it is settled when its message is met.
                    if let Err(e) =
                        Box::pin(conveyor_core::workflow::entries::settle(self, vec![node])).await
                    {
                        tracing::warn!(task = id.0, error = %e, "settling a cancelled node failed");
                    }
                }
                self.announce_now(&[id.0]).await;
                return Ok(TaskState::Cancelled);
            }
        }
        Err(Error::backend(
            conveyor_core::BackendErrorKind::Busy,
            format!("nats cancel: task {id} stayed contended"),
        ))
    }

    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        let mut n = 0;
        let mut queues = Vec::new();
        for id in ids {
            if self.requeue_one(*id).await? {
                n += 1;
                if let Some((rec, _)) = self.inner.ledger.get(id.0).await? {
                    queues.push(rec.queue);
                }
            }
        }
        self.wake(&queues).await;
        Ok(n)
    }

    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        let dead: Vec<Rec> = self
            .inner
            .ledger
            .scan_tasks()
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.state() == TaskState::Dead)
            .filter(|r| queue.is_none_or(|q| q == r.queue))
            .collect();
        self.remove_tasks(&dead).await
    }
}
