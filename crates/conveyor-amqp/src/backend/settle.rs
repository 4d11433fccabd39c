//! Settling reports: what each publishes (its plan), and acknowledging
//! its delivery or custody copy with those publishes, one transaction per
//! consumer channel, each claim under its own lock.

use std::collections::HashMap;
use std::sync::Arc;

use conveyor_core::workflow::entries::{self, Ended};
use conveyor_core::{Error, Finish, FinishAction, Retention, TaskRecord, TaskState, Timestamp};

use super::publish::{ack, commit, publish_on, Publish};
use super::{all, Inner};
use crate::claims::{Claim, Place, SpotGuard};
use crate::consumer::QueueConsumer;
use crate::message::TaskMessage;
use crate::records;

/// The reports settled on each consumer channel (by the channel's
/// number): its consumer, and each delivery tag with its report.
type ByChannel = HashMap<u64, (Arc<QueueConsumer>, Vec<(u64, Settling)>)>;

/// One report and its claim, locked, on its way to being settled.
struct Settling {
    slot: usize,
    claim: Arc<Claim>,
    guard: SpotGuard,
    plan: Plan,
    /// A node task whose workflow cancelled it: acked with nothing else,
    /// and its report refused as stale.
    refused: bool,
}

/// `e` once more, for each report of a batch that failed with it.
fn again(e: &Error) -> Error {
    Error::backend(
        e.backend_kind()
            .unwrap_or(conveyor_core::BackendErrorKind::Other),
        e.chain().to_string(),
    )
}

/// The messages a report publishes, and how its claim is settled.
pub(crate) struct Plan {
    pub(crate) publishes: Vec<Publish>,
    /// The records to write once it applied (with a result store).
    pub(crate) records: Vec<TaskRecord>,
}

impl Inner {
    /// What report `finish` asks for the task `message`.
    pub(crate) fn plan(
        &self,
        message: &TaskMessage,
        finish: Finish,
        now: Timestamp,
    ) -> Result<Plan, Error> {
        let mut publishes = Vec::new();
        let mut message = message.clone();
        let started = message.attempts + 1;
        let keep = self.records.is_some();
        let retention = finish.retention;
        let mut records = Vec::new();
        let mut record = |m: &TaskMessage, state, attempts| {
            if keep {
                records.push(records::record(m, state, attempts, now));
            }
        };
        match finish.action {
            FinishAction::Complete { result } => {
                record(&message, TaskState::Completed, started);
                if let Some(r) = records.last_mut() {
                    r.result = result;
                }
            }
            FinishAction::Discard { reason } => {
                message.error = Some(reason);
                record(&message, TaskState::Cancelled, started);
            }
            FinishAction::Retry { delay, error } => {
                message.attempts += 1;
                message.error = Some(error);
                if message.attempts >= message.max_attempts {
                    record(&message, TaskState::Dead, message.attempts);
                    publishes.push(self.dead_letter(message));
                } else {
                    message.due_at = now.plus(delay);
                    record(&message, TaskState::Retrying, message.attempts);
                    publishes.push(self.route(message, now));
                }
            }
            FinishAction::DeadLetter { error } => {
                message.attempts += 1;
                message.error = Some(error);
                record(&message, TaskState::Dead, message.attempts);
                publishes.push(self.dead_letter(message));
            }
            FinishAction::Release => {
                // A fresh copy at the queue's tail, not a requeue: the
                // broker counts a requeue as a delivery, and a task handed
                // back often enough (a rolling deploy's worker meeting
                // another's handler) would be dead-lettered by its
                // `delivery_limit` without ever having run.
                record(&message, TaskState::Available, message.attempts);
                publishes.push(self.route(message, now));
            }
        }
        // The report's retention, where the task has no keep of its own.
        if let Some(r) = records.first_mut().filter(|r| r.state.is_finished()) {
            r.expires_at = Retention::expiry(retention.as_ref(), r.keep, r.state, now);
        }
        for m in self.messages(finish.follow_ups, now)? {
            if keep {
                records.push(records::waiting(&m, now));
            }
            publishes.push(self.route(m, now));
        }
        Ok(Plan { publishes, records })
    }

    /// Settles a delivery-held task inside its channel's transaction.
    async fn settle_delivery(
        &self,
        consumer: &QueueConsumer,
        tag: u64,
        plan: &Plan,
    ) -> Result<(), Error> {
        let h = &consumer.health;
        for p in &plan.publishes {
            publish_on(h, &consumer.channel, p).await?;
        }
        ack(h, &consumer.channel, tag).await
    }

    /// Settles each report under its claim's lock (see the module header).
    pub(super) async fn finish(
        &self,
        reports: Vec<Finish>,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let now = self.clock.now();
        let mut out: Vec<Option<Result<(), Error>>> = (0..reports.len()).map(|_| None).collect();
        // Each report's claim, locked in token order (two batches never wait
        // for each other in a circle): a renewal or a move to custody in
        // flight ends first, and the report settles the claim where it left
        // it. The locks are held until each claim is settled or known lost;
        // one that fails otherwise stays held, for the report to be tried
        // again.
        let mut order: Vec<(usize, Finish)> = reports.into_iter().enumerate().collect();
        order.sort_by_key(|(_, r)| r.lease.token);
        let mut by_channel: ByChannel = HashMap::new();
        let mut custody: Vec<Settling> = Vec::new();
        let mut previous = None;
        for (slot, report) in order {
            if let Err(e) = report
                .validate_follow_ups()
                .and_then(|()| self.value_limit.check_finish(&report))
            {
                out[slot] = Some(Err(e));
                continue;
            }
            let stale = Error::StaleLease(report.lease.id);
            // A second report of one claim in one batch: the first settles it.
            let claim = match self.held.get(&report.lease) {
                Some(c) if previous != Some(c.token) => c,
                _ => {
                    out[slot] = Some(Err(stale));
                    continue;
                }
            };
            previous = Some(claim.token);
            let guard = claim.lock(&self.hooks).await;
            let Some(place) = guard.as_ref().map(|s| s.place.clone()) else {
                // Found lost by a renewal while this report waited.
                out[slot] = Some(Err(stale));
                continue;
            };
            let plan = match self.plan(&claim.message, report, now) {
                Ok(p) => p,
                Err(e) => {
                    out[slot] = Some(Err(e));
                    continue;
                }
            };
            let mut item = Settling {
                slot,
                claim,
                guard,
                plan,
                refused: false,
            };
            match place {
                Place::Delivery { consumer, tag } if consumer.alive() => {
                    by_channel
                        .entry(consumer.id)
                        .or_insert_with(|| (consumer.clone(), Vec::new()))
                        .1
                        .push((tag, item));
                }
                Place::Delivery { .. } => {
                    // Its channel died: the delivery went back to the queue.
                    self.held.end(&item.claim, &mut item.guard);
                    out[slot] = Some(Err(stale));
                }
                Place::Custody { .. } => custody.push(item),
            }
        }
        if by_channel.is_empty() && custody.is_empty() {
            // Every claim was already void: no broker needed to say so.
            return Ok(out
                .into_iter()
                .map(|r| r.unwrap_or(Err(Error::backend_other("report not settled"))))
                .collect());
        }
        self.refuse_cancelled(&mut by_channel, &mut custody).await?;
        let link = self.link().await?;
        let publishes: Vec<&Publish> = by_channel
            .values()
            .flat_map(|(_, items)| items.iter().flat_map(|(_, i)| &i.plan.publishes))
            .chain(custody.iter().flat_map(|i| &i.plan.publishes))
            .collect();
        self.prepare(&link, &publishes).await?;
        if let Some(store) = &self.records {
            // Each report's record is written before its commit, not after:
            // a commit sent is applied whenever it reaches the broker, even
            // after this call was abandoned (a worker stopping mid-outage)
            // or its process died, and a record written after it would then
            // never be — the task done, its record running for good. Written
            // first, a record is at most one step ahead: when the commit
            // never applies, the delivery comes back and the next
            // reservation writes the record again (see `records`). A record
            // that cannot be written fails the call before any commit: the
            // worker settles again once the store answers, so a result is
            // never dropped while its task is acknowledged.
            let records: Vec<TaskRecord> = by_channel
                .values()
                .flat_map(|(_, items)| items.iter().flat_map(|(_, i)| &i.plan.records))
                .chain(custody.iter().flat_map(|i| &i.plan.records))
                .cloned()
                .collect();
            store.put(&records).await?;
            // Then their nodes settle (and the nodes that makes ready get
            // their tasks), before the commit: a settle that fails fails
            // the call, and the worker reports again.
            let ended: Vec<Ended> = by_channel
                .values()
                .flat_map(|(_, items)| items.iter().map(|(_, i)| i))
                .chain(&custody)
                .filter(|i| !i.refused)
                .filter_map(|i| node_end(&i.claim.message, &i.plan))
                .collect();
            if !ended.is_empty() {
                entries::settle(self, ended).await?;
            }
        }
        for (_, (consumer, items)) in by_channel {
            let tx = consumer.tx.lock().await;
            // Every frame of the transaction is queued at once (in order:
            // the futures are polled first in order) rather than each
            // waiting for the one before it to be written; the broker
            // applies none of them before the commit, and a failure closes
            // the channel, so none of them at all.
            let sent = futures_util::future::join_all(
                items
                    .iter()
                    .map(|(tag, item)| self.settle_delivery(&consumer, *tag, &item.plan)),
            )
            .await;
            let committed = match sent.into_iter().find_map(Result::err) {
                None => match commit(&consumer.health, &consumer.channel).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // Make sure: a channel that lives on would hold the
                        // deliveries this report gives up on.
                        if consumer.alive() {
                            consumer.shut("conveyor: a commit failed").await;
                        }
                        Err((e, false))
                    }
                },
                Some(e) => Err((e, consumer.abandon().await)),
            };
            drop(tx);
            match committed {
                Ok(()) => {
                    consumer.settled(items.len());
                    for (_, mut item) in items {
                        out[item.slot] = Some(if item.refused {
                            Err(Error::StaleLease(item.claim.message.id))
                        } else {
                            Ok(())
                        });
                        self.held.end(&item.claim, &mut item.guard);
                    }
                }
                Err((e, true)) => {
                    // Rolled back on a live channel: nothing applied and
                    // the deliveries are still this worker's.
                    tracing::warn!(error = %e.chain(), "settling failed before the commit; rolled back, the tasks are still held");
                    for (_, item) in &items {
                        out[item.slot] = Some(Err(again(&e)));
                    }
                }
                Err((e, false)) => {
                    // The channel died before the commit: nothing of this
                    // transaction applied, and its deliveries went back to
                    // their queue. Those claims are lost, not the tasks.
                    tracing::warn!(error = %e.chain(), "settling on a closed channel; its tasks will be delivered again");
                    consumer.settled(items.len());
                    for (_, mut item) in items {
                        out[item.slot] = Some(Err(Error::StaleLease(item.claim.message.id)));
                        self.held.end(&item.claim, &mut item.guard);
                    }
                }
            }
        }
        for mut item in custody {
            let id = item.claim.message.id;
            let Some(spot) = item.guard.as_mut() else {
                continue;
            };
            let refused = item.refused;
            let settled = crate::custody::settle(self, &link, &item.claim, spot, item.plan).await;
            out[item.slot] = Some(match settled {
                Ok(()) => {
                    self.held.end(&item.claim, &mut item.guard);
                    if refused {
                        Err(Error::StaleLease(id))
                    } else {
                        Ok(())
                    }
                }
                Err(Error::StaleLease(_)) => {
                    self.held.end(&item.claim, &mut item.guard);
                    Err(Error::StaleLease(id))
                }
                // Still held, in the generation the settle left it in.
                Err(e) => Err(e),
            });
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::backend_other("report not settled"))))
            .collect())
    }

    /// Empties the plans of node tasks whose record says their workflow
    /// cancelled them (`workflows`): acked, and nothing else, their
    /// reports refused as stale. One read of the records of every node
    /// task in the batch.
    async fn refuse_cancelled(
        &self,
        by_channel: &mut ByChannel,
        custody: &mut [Settling],
    ) -> Result<(), Error> {
        let Some(store) = &self.records else {
            return Ok(());
        };
        let mut items: Vec<&mut Settling> = by_channel
            .values_mut()
            .flat_map(|(_, items)| items.iter_mut().map(|(_, i)| i))
            .chain(custody.iter_mut())
            .filter(|i| i.claim.message.node.is_some())
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        let results = store.store()?;
        let reads: Vec<_> = items
            .iter()
            .map(|i| results.get(i.claim.message.id))
            .collect();
        for (item, got) in items.iter_mut().zip(all(reads).await) {
            if got?.is_some_and(|r| r.state == TaskState::Cancelled) {
                item.refused = true;
                item.plan.publishes.clear();
                item.plan.records.clear();
            }
        }
        Ok(())
    }
}

/// The end of a node task's report, to settle: its node, when its plan
/// ends it.
fn node_end(message: &TaskMessage, plan: &Plan) -> Option<Ended> {
    let record = plan.records.first()?;
    Ended::of(
        message.node?,
        message.id.0,
        record.state,
        record.result.as_deref(),
    )
}
