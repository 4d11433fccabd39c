//! Reserving: taking the deliveries the queues' consumers buffered,
//! within the prefetch the worker's slots allow, as reserved tasks, and
//! sending round the delay ladder what is early or not wanted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::workflow::entries::{self, Ended, NodeLink};
use conveyor_core::{
    Error, Lease, Receipt, ReserveParams, Reserved, TaskId, TaskRecord, TaskState, Timestamp,
};
use lapin::message::Delivery;

use super::publish::{ack, commit, publish_on, Publish};
use super::{all, Inner};
use crate::claims::{Claim, Place};
use crate::consumer::QueueConsumer;
use crate::link::Link;
use crate::message::TaskMessage;
use crate::records;

/// A task that arrives this much before its due time still runs (the
/// ladder's hops take a few milliseconds each).
const EARLY: Duration = Duration::from_millis(5);

/// How long an empty reservation waits for messages the broker says are
/// ready but that have not arrived yet.
const SETTLE_IN: Duration = Duration::from_millis(250);

/// How long a task a reservation does not want (its handler is not among
/// the ones asked for) waits on the delay ladder before it is delivered
/// again: long enough that a worker lacking its handler does not spin on
/// it, short enough that a worker having it is not kept waiting.
pub(crate) const UNWANTED_DELAY: Duration = Duration::from_secs(1);

impl Inner {
    /// The prefetch a consumer holding `taken` unsettled needs for a
    /// reservation of `max`, and whether it is exact: the worker's slots when
    /// it said them (what runs plus what waits for a slot never exceeds
    /// them), else at least `taken + max`.
    fn prefetch(&self, taken: usize, max: usize) -> (usize, bool) {
        match self.slots.load(Ordering::Relaxed) {
            0 => (taken + max, false),
            slots => (usize::try_from(slots).unwrap_or(usize::MAX), true),
        }
    }

    /// Takes up to `max` deliveries from `consumers` in order.
    fn take(
        &self,
        consumers: &[Arc<QueueConsumer>],
        params: &ReserveParams<'_>,
        now: Timestamp,
        out: &mut Vec<Reserved>,
        fixes: &mut Vec<(Arc<QueueConsumer>, u64, Publish)>,
    ) {
        let max = params.max;
        let mut deliveries = Vec::new();
        for consumer in consumers {
            if out.len() >= max {
                break;
            }
            if !consumer.alive() {
                // Its channel died: what it buffered went back to the queue
                // with it, and would only run twice.
                continue;
            }
            deliveries.clear();
            consumer.take(max - out.len(), &mut deliveries);
            for d in deliveries.drain(..) {
                if let Some(r) = self.admit(consumer, d, params, now, fixes) {
                    out.push(r);
                }
            }
        }
    }

    fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// A delivery as a reserved task, or what to do with it instead.
    fn admit(
        &self,
        consumer: &Arc<QueueConsumer>,
        delivery: Delivery,
        params: &ReserveParams<'_>,
        now: Timestamp,
        fixes: &mut Vec<(Arc<QueueConsumer>, u64, Publish)>,
    ) -> Option<Reserved> {
        let lease = params.lease;
        let tag = delivery.delivery_tag;
        let message = match TaskMessage::decode(&delivery.properties, delivery.data) {
            Ok(m) => m,
            Err((why, payload)) => {
                tracing::warn!(queue = %consumer.queue, %why, "dead-lettering a message that is not a conveyor task");
                let foreign = TaskMessage {
                    id: TaskId(0),
                    queue: consumer.queue.clone(),
                    handler: String::new(),
                    payload,
                    attempts: 0,
                    max_attempts: 1,
                    timeout: None,
                    enqueued_at: now,
                    due_at: now,
                    error: Some(format!("undecodable message: {why}")),
                    trace: None,
                    keep: None,
                    node: None,
                };
                fixes.push((consumer.clone(), tag, self.dead_letter(foreign)));
                return None;
            }
        };
        if message.due_at.0 > now.plus(EARLY).0 {
            // Early: a delay longer than one pass of the ladder.
            fixes.push((consumer.clone(), tag, self.route(message, now)));
            return None;
        }
        if !params.wants(&message.handler) {
            // A broker delivers what it delivers: a task this worker did not
            // ask for goes round a short delay, unchanged (its due time, its
            // attempts), so that a worker with its handler may take it.
            fixes.push((consumer.clone(), tag, self.delayed(message, UNWANTED_DELAY)));
            return None;
        }
        let token = self.token();
        let reserved = Reserved {
            lease: Lease {
                id: message.id,
                token,
                receipt: Receipt::new(format!("{}:{tag}", consumer.id).into_bytes()),
            },
            queue: consumer.queue.clone(),
            handler: message.handler.clone(),
            payload: message.payload.clone(),
            attempt: message.attempts + 1,
            max_attempts: message.max_attempts,
            timeout: message.timeout,
            ordering_key: None,
            enqueued_at: message.enqueued_at,
            due_at: message.due_at,
            lease_until: now.plus(lease),
            trace: message.trace.clone(),
        };
        self.held.insert(Claim::new(
            token,
            message,
            lease,
            Place::Delivery {
                consumer: consumer.clone(),
                tag,
            },
        ));
        Some(reserved)
    }

    /// Acks each delivery after publishing its replacement, one transaction
    /// per consumer.
    async fn apply_fixes(&self, link: &Link, fixes: Vec<(Arc<QueueConsumer>, u64, Publish)>) {
        let publishes: Vec<&Publish> = fixes.iter().map(|(_, _, p)| p).collect();
        if let Err(e) = self.prepare(link, &publishes).await {
            tracing::warn!(error = %e.chain(), "could not declare where a message goes; it stays queued");
            return;
        }
        for (consumer, tag, publish) in fixes {
            let _tx = consumer.tx.lock().await;
            let done = async {
                let h = &consumer.health;
                publish_on(h, &consumer.channel, &publish).await?;
                ack(h, &consumer.channel, tag).await?;
                commit(h, &consumer.channel).await
            }
            .await;
            consumer.settled(1);
            if let Err(e) = done {
                tracing::warn!(error = %e.chain(), "could not move a message; it will be delivered again");
            }
        }
    }

    /// Reserves as [`Backend::reserve`](conveyor_core::Backend::reserve) asks.
    /// Honours [`ReserveParams::handlers`] the way a broker can: a delivery
    /// of another handler is sent round a second (`UNWANTED_DELAY`) of the delay
    /// ladder, unchanged, and the reservation goes on with the next.
    pub(super) async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        let (queues, max) = (params.queues, params.max);
        if queues.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let link = self.link().await?;
        let now = self.clock.now();
        let mut out = Vec::new();
        let mut fixes = Vec::new();
        let mut consumers = Vec::with_capacity(queues.len());
        for queue in queues {
            let consumer = self.consumer(&link, queue, self.prefetch(0, max).0).await?;
            if self.options.prefetch.is_none() {
                let (want, exact) = self.prefetch(consumer.taken(), max);
                consumer.widen(want, exact).await?;
            }
            consumers.push(consumer);
        }
        self.take(&consumers, &params, now, &mut out, &mut fixes);
        // Fewer than asked: ask the broker on each consumer's own channel how
        // many wait. Its answer comes after every delivery it sent before,
        // so what is not in hand then is still in the queue; wait a moment
        // for those (just published, or the prefetch just widened) rather
        // than answer "not ready".
        let deadline = tokio::time::Instant::now() + SETTLE_IN;
        while out.len() < max {
            let mut waiting = None;
            for c in &consumers {
                // A consumer at its prefetch gets nothing more until the
                // worker settles: no need to ask or wait.
                if c.alive() && c.has_room() && c.flush().await.unwrap_or(0) > 0 {
                    waiting = Some(c.clone());
                    break;
                }
            }
            let before = out.len() + fixes.len();
            self.take(&consumers, &params, now, &mut out, &mut fixes);
            if out.len() + fixes.len() > before {
                continue;
            }
            let Some(c) = waiting else { break };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !c.wait(left).await {
                break;
            }
        }
        self.skip_ended_nodes(&mut out).await;
        if let (Some(store), false) = (&self.records, out.is_empty()) {
            let records: Vec<TaskRecord> = out
                .iter()
                .filter_map(|r| {
                    self.held.with(&r.lease, |m| {
                        records::record(m, TaskState::Running, m.attempts + 1, now)
                    })
                })
                .collect();
            if let Err(e) = store.put(&records).await {
                tracing::warn!(error = %e.chain(), "could not record reserved tasks as running");
            }
        }
        if !fixes.is_empty() {
            self.apply_fixes(&link, fixes).await;
        }
        Ok(out)
    }

    /// Takes out of `out` the node tasks whose record has ended (a report
    /// whose settle or commit was cut short, its delivery back; or a task
    /// its workflow cancelled): settles their nodes from the record (once:
    /// a node settles only while it runs under that very task) and acks
    /// them rather than running them again. One read of the records of
    /// every node task reserved; a read or settle that fails leaves the
    /// task to run (its report settles it).
    async fn skip_ended_nodes(&self, out: &mut Vec<Reserved>) {
        let Some(store) = &self.records else {
            return;
        };
        let nodes: Vec<(usize, NodeLink)> = out
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, self.held.with(&r.lease, |m| m.node)??)))
            .collect();
        if nodes.is_empty() {
            return;
        }
        let Ok(results) = store.store() else { return };
        let reads: Vec<_> = nodes
            .iter()
            .map(|(i, _)| results.get(out[*i].lease.id))
            .collect();
        let mut ended = Vec::new();
        let mut skip = Vec::new();
        for ((i, link), got) in nodes.iter().zip(all(reads).await) {
            let Ok(Some(record)) = got else { continue };
            let id = out[*i].lease.id.0;
            if let Some(end) = Ended::of(*link, id, record.state, record.result.as_deref()) {
                ended.push(end);
                skip.push(*i);
            }
        }
        if skip.is_empty() {
            return;
        }
        if let Err(e) = entries::settle(self, ended).await {
            tracing::warn!(error = %e.chain(), "could not settle node tasks that had ended; they run again");
            return;
        }
        skip.sort_unstable();
        for i in skip.into_iter().rev() {
            let r = out.remove(i);
            self.ack_unrun(&r.lease).await;
        }
    }

    /// Acks the delivery of a task this process held and did not run.
    async fn ack_unrun(&self, lease: &Lease) {
        let Some(claim) = self.held.get(lease) else {
            return;
        };
        let mut guard = claim.lock(&self.hooks).await;
        let Some(Place::Delivery { consumer, tag }) = guard.as_ref().map(|s| s.place.clone())
        else {
            return;
        };
        let tx = consumer.tx.lock().await;
        let done = async {
            ack(&consumer.health, &consumer.channel, tag).await?;
            commit(&consumer.health, &consumer.channel).await
        }
        .await;
        drop(tx);
        consumer.settled(1);
        self.held.end(&claim, &mut guard);
        if let Err(e) = done {
            tracing::warn!(error = %e.chain(), "could not ack a node task that had ended; it comes back");
        }
    }
}
