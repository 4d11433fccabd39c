//! The maintenance part: recovering leases that ran out (on conveyor's
//! clock), pruning old tasks, and maintenance leadership.
//!
//! Recovery does not scan the ledger: running tasks are exactly those whose
//! ready message some consumer delivered and nobody acked, so it reads the
//! held messages (`Streams::held`, one request each) and their records. A
//! record running past its lease gets a new ready message (one dispatch
//! ahead, published first) and is written `available`, or `dead` on its
//! last attempt; then the message the dead lease held is deleted. Records
//! a finish left with follow-ups to enqueue are completed on the way, and
//! held messages of finished tasks (an ack that was lost) are deleted.
//!
//! Pruning is a full scan of the records (see `docs/nats.md`); leadership
//! is one key per role, `lead.<role>`, taken by create or compare-and-set.

use std::time::Duration;

use conveyor_core::async_trait;
use conveyor_core::{
    AttemptOutcome, Error, Maintenance, Retention, TaskState, Timestamp, Transition,
};
use serde::{Deserialize, Serialize};

use crate::backend::NatsBackend;
use crate::ledger::Created;
use crate::names::keys;
use crate::reserve::expire_final;
use crate::streams::Pending;
use crate::workflows::ended;

/// A leadership term as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Term {
    holder: String,
    until: i64,
}

/// What recovering one held message did.
enum Recovered {
    /// Nothing (its lease lasts, or it was not a lease).
    No,
    /// The task is ready again in this queue.
    Ready(String),
    /// The task is dead: its last attempt's lease ran out.
    Dead(u64),
}

impl NatsBackend {
    /// Recovers the task of held message `p` if its lease ran out.
    async fn recover_one(&self, p: Pending, now: Timestamp) -> Result<Recovered, Error> {
        let ledger = &self.inner.ledger;
        let streams = &self.inner.streams;
        for _ in 0..16 {
            let Some((rec, rev)) = ledger.get(p.id).await? else {
                streams.delete_ready(p.seq).await?;
                return Ok(Recovered::No);
            };
            if !rec.follow_ups.is_empty() {
                self.complete_follow_ups(&rec, rev).await?;
                continue;
            }
            let holds = rec.msg_seq == Some(p.seq);
            if rec.state().is_finished() && holds {
                if let Some(node) = ended(&rec) {
                    conveyor_core::workflow::entries::settle(self, vec![node]).await?;
                }
                streams.delete_ready(p.seq).await?;
                return Ok(Recovered::No);
            }
            if !(holds && rec.lease_expired(now)) {
                return Ok(Recovered::No);
            }
            let mut new = rec.clone();
            let done = if rec.attempts >= rec.max_attempts {
                expire_final(&mut new, now)?;
                Recovered::Dead(rec.id)
            } else {
                new.apply(Transition::Expire)?;
                new.settle_attempt(AttemptOutcome::LeaseExpired, now);
                new.dispatch = rec.dispatch + 1;
                new.lease_until = None;
                new.msg_seq = None;
                let out = self.dispatch_for(&new, new.dispatch, false);
                streams.publish(&[out]).await?;
                Recovered::Ready(rec.queue.clone())
            };
            if ledger.cas_rec(&new, rev).await?.is_some() {
                if let Some(node) = ended(&new) {
                    conveyor_core::workflow::entries::settle(self, vec![node]).await?;
                }
                streams.delete_ready(p.seq).await?;
                return Ok(done);
            }
        }
        Ok(Recovered::No)
    }

    /// Recovers what the held messages `held` (listed at the start of
    /// the pass) say ran out, each on its own: one that fails leaves the
    /// others to go on, and the wake-ups and announcements of what was
    /// recovered are sent whatever failed. The number recovered, or the
    /// first failure once the rest is done.
    pub(crate) async fn recover_held(
        &self,
        held: Vec<Pending>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let jobs: Vec<_> = held.into_iter().map(|p| self.recover_one(p, now)).collect();
        let done = crate::backend::all(jobs).await;
        let mut n = 0;
        let mut finished = Vec::new();
        let mut queues = Vec::new();
        let mut failure = None;
        for r in done {
            match r {
                Ok(Recovered::No) => continue,
                Ok(Recovered::Dead(id)) => finished.push(id),
                Ok(Recovered::Ready(q)) => queues.push(q),
                Err(e) => {
                    failure.get_or_insert(e);
                    continue;
                }
            }
            n += 1;
        }
        self.announce(&finished).await;
        self.wake(&queues).await;
        if n > 0 {
            tracing::debug!(tasks = n, "recovered expired leases");
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

#[async_trait]
impl Maintenance for NatsBackend {
    async fn recover_expired(&self) -> Result<u64, Error> {
        let pass = async {
            let now = self.now();
            let held = self.inner.streams.held().await?;
            self.recover_held(held, now).await
        };
        self.guard("recovering expired leases", pass).await
    }

    async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        let now = self.now();
        let finished_before = now.minus(retention.finished).as_millis();
        let dead_before = now.minus(retention.dead).as_millis();
        let old: Vec<_> = self
            .inner
            .ledger
            .scan_tasks()
            .await?
            .into_iter()
            .map(|(rec, _)| rec)
            .filter(|rec| {
                // A workflow node's task goes with its workflow.
                if rec.node.is_some() {
                    return false;
                }
                if let (Some(at), true) = (rec.expires_at, rec.state().is_finished()) {
                    return at < now.as_millis();
                }
                let cutoff = match rec.state() {
                    TaskState::Completed | TaskState::Cancelled => finished_before,
                    TaskState::Dead => dead_before,
                    _ => return false,
                };
                rec.finished_at.is_some_and(|at| at <= cutoff)
            })
            .collect();
        let tasks = self.remove_tasks(&old).await?;
        conveyor_core::workflow::entries::prune(self, retention).await?;
        Ok(tasks)
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let now = self.now();
        let ledger = &self.inner.ledger;
        let key = keys::lead(role);
        let term = serde_json::to_vec(&Term {
            holder: holder.to_string(),
            until: now.plus(ttl).as_millis(),
        })
        .unwrap_or_default();
        let take = async {
            for _ in 0..16 {
                match ledger.entry(&key).await? {
                    None => match ledger.create(&key, term.clone().into()).await? {
                        Created::New(_) => return Ok(true),
                        Created::Exists => continue,
                    },
                    Some((value, rev)) => {
                        let free = serde_json::from_slice::<Term>(&value)
                            .map(|t| t.holder == holder || t.until <= now.as_millis())
                            .unwrap_or(true);
                        if !free {
                            return Ok(false);
                        }
                        if ledger.cas(&key, term.clone().into(), rev).await?.is_some() {
                            return Ok(true);
                        }
                    }
                }
            }
            Ok(false)
        };
        self.guard("taking leadership", take).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use conveyor_core::{Backend, Clock, Inspection, ManualClock, NewTask, TaskState};

    use crate::backend::NatsBackend;

    /// A recovery pass lists the held messages, then works on each; a
    /// message acked or deleted by someone else in between (a finish's
    /// ack, another process's pass) is already gone when the pass deletes
    /// it. Inside the stream, the server then answers "sequence N not
    /// found" (10043): that is done, not a failure of the pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_message_gone_before_the_pass_deletes_it_is_done() {
        let url = std::env::var("CONVEYOR_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string());
        let clock = Arc::new(ManualClock::default());
        let prefix = format!("cvu{:016x}", fastrand::u64(..));
        let b = NatsBackend::connect_with(&url, &prefix, clock.clone())
            .await
            .expect("connect to the test NATS server");
        let run = async {
            // First in the stream and never touched: every message after it
            // is inside the stream.
            b.enqueue(NewTask::new("h", Vec::new()).queue("elsewhere"))
                .await
                .expect("enqueue");
            let tasks = (0..3).map(|i| NewTask::new("h", vec![i])).collect();
            b.enqueue_many(tasks).await.expect("enqueue");
            let queue = [conveyor_core::DEFAULT_QUEUE.to_string()];
            let got = b
                .reserve(conveyor_core::ReserveParams::new(
                    &queue,
                    3,
                    Duration::from_secs(1),
                ))
                .await
                .expect("reserve");
            assert_eq!(got.len(), 3);
            clock.advance(Duration::from_secs(2));
            let mut held = b.inner.streams.held().await.expect("held");
            held.sort_by_key(|p| p.seq);
            assert_eq!(held.len(), 3);
            assert!(b
                .inner
                .streams
                .delete_ready(held[1].seq)
                .await
                .expect("deleted"));
            let n = b
                .recover_held(held, clock.now())
                .await
                .expect("the pass succeeds");
            assert_eq!(n, 3, "every expired lease recovered");
            let stats = b.stats().await.expect("stats");
            let available: u64 = stats.iter().map(|s| s.count(TaskState::Available)).sum();
            assert_eq!(available, 4);
        };
        run.await;
        b.destroy().await.expect("destroy");
    }
}
