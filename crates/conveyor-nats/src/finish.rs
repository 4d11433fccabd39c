//! `renew` and `finish`: every report is a compare-and-set on its record
//! that applies only while the record runs under the report's token
//! (fencing: a worker whose lease ran out gets [`Error::StaleLease`], even
//! though JetStream itself would let it ack the message), then the
//! message is acked through the receipt (its reply subject).
//!
//! A report that makes the task runnable again publishes first and writes
//! second: a retry publishes its schedule entry (or, with no delay left, a
//! ready message) and a release a ready message, numbered one past the
//! record's dispatch, *before* the record changes, then acks the message it
//! held. A crash between the two leaves the task running under its old
//! lease (recovered when it expires) and an extra message the record
//! refuses; never a task without a message.
//!
//! Follow-ups are stored in the same write as the report (with their ids
//! taken beforehand), then enqueued, then cleared from the record, then the
//! message is acked. A crash after the write leaves them in the record
//! and the message unacked: the next process that meets the record (the
//! redelivery, lease recovery, or the same report sent again) enqueues
//! them, with the same ids, so exactly once. A stale report writes nothing
//! and so enqueues nothing.

use std::time::Duration;

use conveyor_core::{
    unsupported, AttemptOutcome, Error, Finish, FinishAction, Lease, TaskState, Timestamp,
    Transition,
};

use crate::backend::{all, NatsBackend};
use crate::record::{FollowUp, Spec};
use crate::workflows::ended;
use conveyor_core::workflow::entries::Ended;

/// What one applied report did, for the batch's notifications.
#[derive(Debug, Default)]
struct Applied {
    /// The task reached a final state.
    finished: Option<u64>,
    /// The task is ready again in this queue.
    ready: Option<String>,
    /// The task runs a workflow node and ended: its node is settled, and
    /// then its message acked through this reply subject.
    ended: Option<(Ended, String)>,
}

fn reply_of(lease: &Lease) -> String {
    String::from_utf8_lossy(lease.receipt.as_bytes()).into_owned()
}

impl NatsBackend {
    pub(crate) async fn renew_leases(
        &self,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<bool>, Error> {
        let now = self.now();
        let jobs: Vec<_> = leases
            .iter()
            .map(|l| self.renew_one(l, now, lease))
            .collect();
        let out: Result<Vec<bool>, Error> = all(jobs).await.into_iter().collect();
        self.inner.streams.flush().await;
        out
    }

    async fn renew_one(&self, l: &Lease, now: Timestamp, lease: Duration) -> Result<bool, Error> {
        let ledger = &self.inner.ledger;
        // The copy this process wrote last, if any: its compare-and-set
        // lands only when the record is still exactly that.
        let mut kept = self.inner.held.peek(l.id.0, l.token);
        for _ in 0..16 {
            let (rec, rev) = match kept.take() {
                Some(k) => k,
                None => match ledger.get(l.id.0).await? {
                    Some(k) => k,
                    None => {
                        self.inner.held.forget(l.id.0);
                        return Ok(false);
                    }
                },
            };
            if rec.state() != TaskState::Running || rec.token != l.token {
                self.inner.held.forget(l.id.0);
                return Ok(false);
            }
            let mut new = rec;
            new.lease_until = Some(now.plus(lease).as_millis());
            if let Some(new_rev) = ledger.cas_rec(&new, rev).await? {
                self.inner.held.keep(new, new_rev);
                self.inner.streams.progress(&reply_of(l)).await;
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) async fn finish_reports(
        &self,
        reports: Vec<Finish>,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let now = self.now();
        let mut checks: Vec<Result<(), Error>> = reports
            .iter()
            .map(|r| {
                r.validate_follow_ups()?;
                r.follow_ups.iter().try_for_each(|t| self.check_task(t))
            })
            .collect();
        for (check, r) in checks.iter_mut().zip(&reports) {
            if check.is_ok() && r.follow_ups.iter().any(|t| t.ordering_key.is_some()) {
                *check = Err(unsupported("nats", "ordering keys"));
            }
        }
        let wanted: u64 = reports
            .iter()
            .zip(&checks)
            .filter(|(_, c)| c.is_ok())
            .map(|(r, _)| r.follow_ups.len() as u64)
            .sum();
        let mut next_id = if wanted > 0 {
            self.inner.ledger.alloc_ids(wanted).await?
        } else {
            0
        };
        let mut jobs = Vec::with_capacity(reports.len());
        for (r, check) in reports.iter().zip(&checks) {
            if check.is_err() {
                continue;
            }
            let follow_ups: Vec<FollowUp> = r
                .follow_ups
                .iter()
                .map(|t| {
                    let f = FollowUp {
                        id: next_id,
                        spec: Spec::of(t, now),
                    };
                    next_id += 1;
                    f
                })
                .collect();
            jobs.push(self.finish_one(r, follow_ups, now));
        }
        let mut results = all(jobs).await.into_iter();
        let mut finished = Vec::new();
        let mut ready = Vec::new();
        let mut ended = Vec::new();
        let out: Vec<Result<(), Error>> = checks
            .into_iter()
            .map(|c| {
                c?;
                let applied = results.next().unwrap_or_else(|| {
                    Err(Error::backend_other("nats finish: a report went missing"))
                })?;
                finished.extend(applied.finished);
                ready.extend(applied.ready);
                ended.extend(applied.ended);
                Ok(())
            })
            .collect();
        if !ended.is_empty() {
            self.settle_then_ack(ended).await;
        }
        self.inner.streams.flush().await;
        self.announce(&finished).await;
        self.wake(&ready).await;
        all_failed(out)
    }

    async fn finish_one(
        &self,
        r: &Finish,
        follow_ups: Vec<FollowUp>,
        now: Timestamp,
    ) -> Result<Applied, Error> {
        let ledger = &self.inner.ledger;
        let stale = || Error::StaleLease(r.lease.id);
        // The copy this process wrote last, if any: its compare-and-set
        // lands only when the record is still exactly that.
        let mut kept = self.inner.held.take(r.lease.id.0, r.lease.token);
        for _ in 0..16 {
            let (rec, rev) = match kept.take() {
                Some(k) => k,
                None => match ledger.get(r.lease.id.0).await? {
                    Some(k) => k,
                    None => return Err(stale()),
                },
            };
            if rec.token != r.lease.token {
                return Err(stale());
            }
            if rec.state() != TaskState::Running {
                // A node task's end its first report did not get to
                // settle (settled once whoever hears it).
                if let Some(node) = ended(&rec) {
                    Box::pin(conveyor_core::workflow::entries::settle(self, vec![node])).await?;
                }
                // The same report again, after its follow-ups were stored
                // but not all enqueued: finish the job.
                if rec.state().is_finished() && !rec.follow_ups.is_empty() {
                    Box::pin(self.complete_follow_ups(&rec, rev)).await?;
                    self.inner.streams.ack(&reply_of(&r.lease)).await;
                    return Ok(Applied::default());
                }
                return Err(stale());
            }
            let mut new = rec.clone();
            new.lease_until = None;
            new.follow_ups = follow_ups.clone();
            let mut first = None;
            let mut applied = Applied::default();
            match &r.action {
                FinishAction::Complete { result } => {
                    new.apply(Transition::Complete)?;
                    // The error of an earlier attempt stays in the history
                    // only: a completed task shows none.
                    new.error = None;
                    new.set_result(result.clone());
                    new.finished(now, r.retention.as_ref());
                }
                FinishAction::Retry { delay, error } => {
                    new.error = Some(error.clone());
                    if rec.attempts >= rec.max_attempts {
                        new.apply(Transition::DeadLetter)?;
                        new.finished(now, r.retention.as_ref());
                        let error = error.clone();
                        new.settle_attempt(AttemptOutcome::DeadLettered { error }, now);
                    } else {
                        new.apply(Transition::Retry)?;
                        let error = error.clone();
                        new.settle_attempt(AttemptOutcome::Failed { error }, now);
                        new.run_at = now.plus(*delay).as_millis();
                        if new.run_at <= now.as_millis() {
                            applied.ready = Some(rec.queue.clone());
                        }
                        first = Some(self.dispatch_for(&new, rec.dispatch + 1, false));
                    }
                }
                FinishAction::DeadLetter { error } => {
                    new.apply(Transition::DeadLetter)?;
                    new.error = Some(error.clone());
                    new.finished(now, r.retention.as_ref());
                    let error = error.clone();
                    new.settle_attempt(AttemptOutcome::DeadLettered { error }, now);
                }
                FinishAction::Discard { reason } => {
                    new.apply(Transition::Discard)?;
                    new.error = Some(reason.clone());
                    new.finished(now, r.retention.as_ref());
                    let reason = reason.clone();
                    new.settle_attempt(AttemptOutcome::Discarded { reason }, now);
                }
                FinishAction::Release => {
                    new.apply(Transition::Release)?;
                    new.settle_attempt(AttemptOutcome::Released, now);
                    new.attempts = new.attempts.saturating_sub(1);
                    new.run_at = new.run_at.min(now.as_millis());
                    new.dispatch = rec.dispatch + 1;
                    new.msg_seq = None;
                    first = Some(self.dispatch_for(&new, new.dispatch, false));
                    applied.ready = Some(rec.queue.clone());
                }
            }
            // The rare paths are boxed: every report of a batch is one
            // future in a vector, and they would make each one large.
            if let Some(out) = first {
                Box::pin(self.inner.streams.publish(&[out])).await?;
            }
            let Some(new_rev) = ledger.cas_rec(&new, rev).await? else {
                continue;
            };
            if !new.follow_ups.is_empty() {
                Box::pin(self.complete_follow_ups(&new, new_rev)).await?;
            }
            match ended(&new) {
                // Acked once its node is settled (`workflows/`).
                Some(node) => applied.ended = Some((node, reply_of(&r.lease))),
                None => self.inner.streams.ack(&reply_of(&r.lease)).await,
            }
            if new.state().is_finished() {
                applied.finished = Some(new.id);
            }
            return Ok(applied);
        }
        Err(Error::backend(
            conveyor_core::BackendErrorKind::Busy,
            format!("nats finish: task {} stayed contended", r.lease.id),
        ))
    }
}

impl NatsBackend {
    /// Settles the nodes of node tasks a batch ended, then acks their
    /// messages. A settle that fails leaves them unacked: the redelivery
    /// meets the finished record and settles it (the reports stand, they
    /// were applied).
    async fn settle_then_ack(&self, ended: Vec<(Ended, String)>) {
        let (nodes, replies): (Vec<Ended>, Vec<String>) = ended.into_iter().unzip();
        if let Err(e) = conveyor_core::workflow::entries::settle(self, nodes).await {
            tracing::warn!(error = %e, "settling workflow nodes failed; their redelivery will");
            return;
        }
        for reply in replies {
            self.inner.streams.ack(&reply).await;
        }
    }
}

/// The reports' results, or the store's failure as a whole when every
/// report failed in a way that may pass (the server down or silent:
/// nothing was applied), so the caller retries the call as one.
fn all_failed(out: Vec<Result<(), Error>>) -> Result<Vec<Result<(), Error>>, Error> {
    if !out.iter().all(|r| matches!(r, Err(e) if e.is_transient())) {
        return Ok(out);
    }
    match out.into_iter().next() {
        Some(Err(e)) => Err(e),
        _ => Ok(Vec::new()),
    }
}
