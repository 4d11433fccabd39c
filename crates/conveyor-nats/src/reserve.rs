//! `reserve`: read the paused queues and leave them out, promote what is
//! due, then take ready messages in priority order and turn each into a
//! lease by compare-and-set on its record.
//!
//! The broker decides who *receives* a message (one consumer per queue and
//! priority, each message to one reserver at a time); the record decides
//! whether it may *run* ([`verdict`]): a message is live when its dispatch
//! number is the record's (or the next one, published by a transition
//! whose write has not landed yet). A redelivery of the message a lease
//! holds runs again only once that lease has passed on conveyor's clock
//! (the broker's `AckWait` is the backstop that brings it back; until the
//! lease ends it is handed back with a delay). Anything else — a finished
//! task, a cancelled one, an older dispatch — is acked and dropped.
//!
//! Priorities: each (queue, priority) has its own subject and consumer;
//! one stream-info request lists the subjects holding messages, and the
//! consumers are read highest priority first, each fetching no more than
//! the slots left, so a reserver never holds more unacked messages than
//! `max`. That listing is skipped while the first queue's one known
//! priority keeps coming back full (`priorities.rs`), and the schedule is
//! listed only when something known is due or once a second of conveyor's
//! clock (`due.rs`). A message of a freshly enqueued task carries its
//! record, so most leases are taken without reading the ledger (`body.rs`).
//!
//! A reservation that names its handlers ([`ReserveParams::handlers`])
//! hands a message of any other handler back with a pause of a second,
//! its record untouched, for a worker that has that handler.

use std::time::Duration;

use conveyor_core::{
    AttemptOutcome, Error, Receipt, ReserveParams, Reserved, TaskState, Timestamp, Transition,
};

use crate::backend::NatsBackend;
use crate::record::Rec;
use crate::streams::Delivery;
use crate::workflows::ended;

/// How long a short fetch from a lagging consumer waits before asking
/// again (see `fetch_from`).
const LAG_PAUSE: Duration = Duration::from_millis(10);

/// How many times a short fetch from a lagging consumer is asked again.
const LAG_CHECKS: u32 = 10;

/// Deliveries of a message numbered ahead of its record before it is
/// dropped as an orphan (its writer died between publish and write).
const ORPHAN_DELIVERIES: i64 = 30;
/// How long such a message is handed back for.
const ORPHAN_PAUSE: Duration = Duration::from_secs(1);
/// How long a message of a handler the reservation did not ask for
/// ([`ReserveParams::handlers`]) is handed back for: long enough that a
/// worker lacking its handler does not spin on it, short enough that one
/// having it is not kept waiting.
const UNWANTED_PAUSE: Duration = Duration::from_secs(1);

/// What to do with a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Lease the task.
    Take,
    /// Hand the message back for this long (not now, maybe later).
    Later(Duration),
    /// Ack and forget it.
    Drop,
}

/// The record's word on message `d`.
pub(crate) fn verdict(rec: &Rec, d: &Delivery, now: Timestamp) -> Verdict {
    let live = d.dispatch == rec.dispatch;
    let next = d.dispatch == rec.dispatch + 1;
    let held = rec.msg_seq == Some(d.seq);
    let until = |t: i64| Duration::from_millis(u64::try_from(t - now.as_millis()).unwrap_or(0));
    match rec.state() {
        TaskState::Available if live || next => Verdict::Take,
        TaskState::Scheduled | TaskState::Retrying if next && rec.is_due(now) => Verdict::Take,
        TaskState::Scheduled | TaskState::Retrying if next => {
            Verdict::Later(until(rec.run_at).max(ORPHAN_PAUSE))
        }
        TaskState::Running if (held || next) && rec.lease_expired(now) => Verdict::Take,
        TaskState::Running if held => {
            Verdict::Later(until(rec.lease_until.unwrap_or(0)).max(ORPHAN_PAUSE))
        }
        _ if next && d.deliveries < ORPHAN_DELIVERIES => Verdict::Later(ORPHAN_PAUSE),
        _ => Verdict::Drop,
    }
}

/// What every lease of one reservation gets: its start, and what the
/// reservation asked for (the lease's length, the worker, the handlers).
#[derive(Debug, Clone, Copy)]
struct Grant<'a> {
    now: Timestamp,
    params: ReserveParams<'a>,
}

impl NatsBackend {
    pub(crate) async fn reserve_tasks(
        &self,
        params: ReserveParams<'_>,
    ) -> Result<Vec<Reserved>, Error> {
        let max = params.max;
        if max == 0 || params.queues.is_empty() {
            return Ok(Vec::new());
        }
        // The paused queues are left out of the whole call (no promotion,
        // no listing, no fetch), by one read of the paused set made before
        // anything else: a pause that returned before this call began is
        // seen (`queue_control.rs`).
        let (paused, _) = self.paused_set().await?;
        let active: Vec<String>;
        let queues: &[String] = if paused.is_empty() {
            params.queues
        } else {
            active = params
                .queues
                .iter()
                .filter(|q| !paused.contains(*q))
                .cloned()
                .collect();
            &active
        };
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let grant = Grant { now, params };
        let streams = &self.inner.streams;
        let names = &self.inner.names;
        let hint = &streams.priorities;
        // The schedule is listed only when something known may be due, or
        // at least every second of conveyor's clock for what other
        // processes scheduled (the rule and its reasons: `due.rs`). A
        // manual clock moved past a due time this process wrote or saw
        // lists and promotes here, on the next reserve.
        let list_schedule = streams.due.must_list(queues, now.as_millis());
        let mut out = Vec::new();
        // The first queue's one known priority, fetched full last time:
        // straight there, no listing; a short fetch drops the shortcut and
        // the full path below takes the rest (`priorities.rs`).
        if !list_schedule {
            if let Some(p) = hint.straight(&queues[0]) {
                let full = self
                    .fetch_from(&queues[0], p, None, max, grant, &mut out)
                    .await
                    .inspect_err(|_| hint.forget(&queues[0]))?;
                if full {
                    streams.flush().await;
                    return Ok(out);
                }
            }
        }
        let listing = hint.begin();
        let ready_all = names.ready_all();
        let ready_listing = streams.subjects(&streams.ready, &ready_all);
        let subjects = if list_schedule {
            let due_listing = streams.due.begin(now.as_millis());
            // Both listings in flight at once (both read after `now`); the
            // ready one is read again only when promotion met due entries.
            let (sched, ready) = futures_util::future::join(
                streams.subjects(&streams.sched, &names.sched_all()),
                ready_listing,
            )
            .await;
            let promotion = self.promote_due(queues, sched?, now).await?;
            streams.due.listed(due_listing, promotion.waiting);
            if promotion.read {
                streams.subjects(&streams.ready, &names.ready_all()).await?
            } else {
                ready?
            }
        } else {
            ready_listing.await?
        };
        'queues: for q in queues {
            // Each priority of the queue with messages, and how many.
            let mut listed: Vec<(i32, usize)> = subjects
                .iter()
                .filter(|(_, n)| *n > 0)
                .filter_map(|(s, n)| Some((names.parse_ready(s)?, *n)))
                .filter(|((queue, _), _)| queue == q)
                .map(|((_, p), n)| (p, n))
                .collect();
            listed.sort_unstable_by_key(|&(p, _)| std::cmp::Reverse(p));
            listed.dedup_by_key(|(p, _)| *p);
            let priorities: Vec<i32> = listed.iter().map(|(p, _)| *p).collect();
            hint.listed(listing, q, &priorities);
            for (p, n) in listed {
                if out.len() >= max {
                    break 'queues;
                }
                if self.fetch_from(q, p, Some(n), max, grant, &mut out).await? {
                    break 'queues;
                }
            }
        }
        streams.flush().await;
        Ok(out)
    }

    /// Fetches `queue`'s messages of `priority` and leases what the records
    /// allow into `out`, until `out` holds `max` or a fetch comes back
    /// short. True when every fetch came back full (more may wait there);
    /// told to the ready hint either way.
    ///
    /// `listed`: how many messages the stream's listing showed there. On a
    /// cluster the consumer's leader may serve from a replica of the stream
    /// that has not yet applied the latest writes (a publish is
    /// acknowledged once most replicas stored it), so a fetch right after
    /// an enqueue can come back short though the message is there. When a
    /// fetch comes back short on a replicated stream and the consumer knows
    /// of fewer messages than were listed (pending plus held), it is asked
    /// again after [`LAG_PAUSE`], at most [`LAG_CHECKS`] times.
    async fn fetch_from(
        &self,
        queue: &str,
        priority: i32,
        listed: Option<usize>,
        max: usize,
        grant: Grant<'_>,
        out: &mut Vec<Reserved>,
    ) -> Result<bool, Error> {
        let streams = &self.inner.streams;
        let mut lag_checks = 0;
        loop {
            let want = max.saturating_sub(out.len());
            if want == 0 {
                return Ok(true);
            }
            let generation = self.inner.wake.board.reconnects();
            let got = streams.fetch(queue, priority, want, generation).await?;
            let full = got.len() >= want;
            streams.priorities.fetched(queue, priority, full);
            let before = out.len();
            if !got.is_empty() {
                out.extend(self.take_all(got, grant).await?);
            }
            if !full {
                let listed = listed.unwrap_or(0);
                if listed > 0
                    && lag_checks < LAG_CHECKS
                    && streams.replicated()
                    && streams.lagging(queue, priority, listed).await?
                {
                    lag_checks += 1;
                    tokio::time::sleep(LAG_PAUSE).await;
                    continue;
                }
                return Ok(false);
            }
            if grant.params.handlers.is_some() && out.len() == before {
                // A full fetch of nothing this worker asked for: the next
                // ones are likely the same; the next reservation goes on.
                return Ok(false);
            }
        }
    }

    /// Leases what the records allow of `got`, all at once. A delivery that
    /// fails is left unacked (the broker brings it back); the call fails
    /// only when every one did.
    async fn take_all(&self, got: Vec<Delivery>, grant: Grant<'_>) -> Result<Vec<Reserved>, Error> {
        let jobs: Vec<_> = got.iter().map(|d| self.take(d, grant)).collect();
        let results = crate::backend::all(jobs).await;
        let mut out = Vec::new();
        let mut failure = None;
        for r in results {
            match r {
                Ok(Some(t)) => out.push(t),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "a delivery could not be leased; the broker will redeliver it");
                Ok(out)
            }
            None => Ok(out),
        }
    }

    /// Leases one delivery if its record allows.
    async fn take(&self, d: &Delivery, grant: Grant<'_>) -> Result<Option<Reserved>, Error> {
        let Grant { now, params } = grant;
        let (lease, worker) = (params.lease, params.worker);
        let ledger = &self.inner.ledger;
        let streams = &self.inner.streams;
        // The record as created, if the message carries it: decided on
        // only when it says "take" on a first delivery; the compare-and-set
        // at its revision then lands only if it is still the record
        // (`body.rs`). Otherwise, and after a refused write, read it.
        let mut copy = d
            .copy
            .clone()
            .filter(|(rec, _)| d.deliveries == 1 && rec.follow_ups.is_empty())
            .filter(|(rec, _)| verdict(rec, d, now) == Verdict::Take);
        for _ in 0..16 {
            let kept = match copy.take() {
                Some(k) => Some(k),
                None => ledger.get(d.id).await?,
            };
            let Some((rec, rev)) = kept else {
                streams.ack(&d.reply).await;
                return Ok(None);
            };
            if !rec.follow_ups.is_empty() {
                // A finish stored them and did not get to enqueue them
                // (boxed: a rare path, kept out of every take's future).
                Box::pin(self.complete_follow_ups(&rec, rev)).await?;
                continue;
            }
            match verdict(&rec, d, now) {
                Verdict::Drop => {
                    // A node task's end whose settle a crash cut short.
                    if let Some(node) = ended(&rec) {
                        Box::pin(conveyor_core::workflow::entries::settle(self, vec![node]))
                            .await?;
                    }
                    streams.ack(&d.reply).await;
                    return Ok(None);
                }
                Verdict::Later(pause) => {
                    streams.nak(&d.reply, pause).await;
                    return Ok(None);
                }
                Verdict::Take => {}
            }
            if !params.wants(&rec.handler) {
                // Another handler's task: left as it is, for a worker
                // that has the handler (a rolling deploy).
                streams.nak(&d.reply, UNWANTED_PAUSE).await;
                return Ok(None);
            }
            // The record read (or copied) is not needed past here: a
            // refused write reads it again.
            let mut new = rec;
            if new.state() == TaskState::Running {
                if new.attempts >= new.max_attempts {
                    expire_final(&mut new, now)?;
                    if ledger.cas_rec(&new, rev).await?.is_some() {
                        if let Some(node) = ended(&new) {
                            Box::pin(conveyor_core::workflow::entries::settle(self, vec![node]))
                                .await?;
                        }
                        streams.ack(&d.reply).await;
                        self.announce(&[new.id]).await;
                        return Ok(None);
                    }
                    continue;
                }
                new.settle_attempt(AttemptOutcome::LeaseExpired, now);
                new.apply(Transition::Expire)?;
            } else if Transition::Due.sources().contains(&new.state()) {
                new.apply(Transition::Due)?;
            }
            new.apply(Transition::Reserve)?;
            new.attempts += 1;
            new.reservations += 1;
            new.token = new.reservations;
            new.worker = worker.map(str::to_string);
            new.started_at = Some(now.as_millis());
            new.lease_until = Some(now.plus(lease).as_millis());
            new.dispatch = d.dispatch;
            new.msg_seq = Some(d.seq);
            if let Some(new_rev) = ledger.cas_rec(&new, rev).await? {
                let reserved = new.to_reserved(Receipt::new(d.reply.as_bytes().to_vec()));
                self.inner.held.keep(new, new_rev);
                return Ok(Some(reserved));
            }
        }
        Ok(None)
    }
}

/// `rec` ran out of its lease on its last attempt: dead.
pub(crate) fn expire_final(rec: &mut Rec, now: Timestamp) -> Result<(), Error> {
    rec.apply(Transition::ExpireFinal)?;
    rec.settle_attempt(AttemptOutcome::LeaseExpired, now);
    rec.error = Some("the lease expired on the last attempt (the worker stopped or hung)".into());
    rec.finished(now, None);
    rec.lease_until = None;
    Ok(())
}
