//! Long tasks outlive RabbitMQ's `consumer_timeout`: custody queues.
//!
//! RabbitMQ closes a channel whose delivery stays unacknowledged longer than
//! `consumer_timeout` (30 minutes by default, server-wide before 3.12), and
//! every task held on that channel goes back to its queue while its worker
//! still runs it — Celery workers die of this on long tasks. conveyor never
//! holds a delivery that long. When a task has been held for `hold` (below the
//! server's timeout), the worker moves it into a **custody queue** of its own,
//! `P.custody.ID.CLAIM.GEN`: a quorum queue holding one copy of the task, with
//! a message TTL of one lease, dead-lettering into the task's work queue. The
//! copy's publish and the delivery's ack go in one transaction.
//!
//! The move happens on time: a sweeper task of the backend sleeps until the
//! next held delivery reaches `hold` and starts its move then (its own task,
//! retried every 0.1 s to 5 s while the broker cannot be reached), not at the
//! next lease renewal. So a delivery is held `hold` plus the move's own
//! round trips (one queue declaration and one transaction), never `hold`
//! plus a third of a lease.
//!
//! From then on the claim is the custody queue. Each renewal declares the next
//! generation with a fresh copy, then deletes the previous one: RabbitMQ
//! answers with how many messages the delete removed, so `1` means the claim
//! held, and `0` means the copy had already expired back into the work queue
//! (this worker stalled for a whole lease) — the claim is lost, the new copy
//! is deleted, and the attempt is cancelled like any lost lease. A worker
//! that dies simply stops renewing: its copy expires into the work queue
//! within one lease, and another worker runs the task (at-least-once). A
//! renewal that failed half way (its copy confirmed, the delete's answer
//! lost) leaves the copy in the next generation; the next try finds it there
//! (the declaration counts it), publishes no second one, and takes that
//! generation as its own whatever the delete says.
//!
//! Settling a task in custody first renews (so it owns a fresh copy for a
//! whole lease), then publishes what follows the report with confirms, then
//! deletes the copy. A stale worker therefore publishes nothing, and a crash
//! between the publishes and the delete runs the task again, never loses it.
//!
//! Each custody queue is declared with an anchor after it (see
//! `link::anchor`), so a node killed right after a move or a renewal comes
//! back with the new generation's copy.
//!
//! The move, the renewals and the report of one claim never overlap: each
//! runs under the claim's lock (see `held`), so a report waits for a renewal
//! in flight and settles the generation that renewal made.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use conveyor_core::{Error, Lease};

use crate::backend::{ack, commit, publish_confirmed, publish_on, Inner, Plan, Publish};
use crate::claims::{Claim, Place, Spot};
use crate::consumer::QueueConsumer;
use crate::hooks::Point;
use crate::link::{anchor, declare, Link};
use crate::topology;

/// How long an empty custody queue outlives its copy's TTL before RabbitMQ
/// deletes it (a worker that died leaves one behind).
const EXPIRES_AFTER: Duration = Duration::from_secs(60);

/// The first pause before a failed move to custody is tried again; it
/// doubles up to [`MOVE_RETRY_MAX`].
const MOVE_RETRY: Duration = Duration::from_millis(100);
const MOVE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Renews one claim: `true` while this worker still holds it.
pub(crate) async fn renew(inner: &Inner, lease: &Lease, ttl: Duration) -> bool {
    let Some(claim) = inner.held.get(lease) else {
        return false;
    };
    let mut guard = claim.lock(&inner.hooks).await;
    let Some(spot) = guard.as_mut() else {
        // Settled (or found lost) while this renewal waited.
        return false;
    };
    let kept = match spot.place.clone() {
        // The move to custody is the sweeper's (on time, not on this tick).
        Place::Delivery { consumer, .. } => Ok(consumer.alive()),
        Place::Custody { generation } => {
            spot.ttl = ttl;
            match roll(inner, &claim, generation, ttl).await {
                Ok(Some(next)) => {
                    spot.place = Place::Custody { generation: next };
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            }
        }
    };
    match kept {
        Ok(true) => true,
        Ok(false) => {
            inner.held.end(&claim, &mut guard);
            false
        }
        Err(e) => {
            // Not known lost: the broker is unreachable. The custody copy
            // keeps the task safe either way; try again at the next renewal.
            tracing::warn!(task = %lease.id, error = %e.chain(), "renewing a custody claim failed");
            true
        }
    }
}

/// Starts the move to custody of each delivery as it reaches `hold`, until
/// the backend is dropped.
pub(crate) async fn sweep(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let hold = strong.options.hold;
        let now = Instant::now();
        // A delivery taken after `now` is due after `now + hold`: sleeping
        // until then at most misses none.
        let mut wake = now + hold;
        for claim in strong.held.awaiting_move() {
            let due = claim.delivered + hold;
            if due > now {
                wake = wake.min(due);
            } else if claim.start_move() {
                tokio::spawn(move_to_custody(inner.clone(), claim));
            }
        }
        drop(strong);
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
}

/// Moves `claim`'s delivery into custody generation 1, trying again while
/// the broker cannot be reached; ends once it moved, or the claim was
/// settled or lost (the next renewal says so).
async fn move_to_custody(inner: Weak<Inner>, claim: Arc<Claim>) {
    let mut pause = MOVE_RETRY;
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut guard = claim.lock(&inner.hooks).await;
        let Some(spot) = guard.as_mut() else {
            return;
        };
        let Place::Delivery { consumer, tag } = spot.place.clone() else {
            claim.moved();
            return;
        };
        if !consumer.alive() {
            return;
        }
        match handover(&inner, &claim, &consumer, tag, spot.ttl).await {
            Ok(committed) => {
                spot.place = Place::Custody { generation: 1 };
                claim.moved();
                drop(guard);
                if committed {
                    tracing::info!(task = %claim.message.id, queue = %claim.message.queue,
                        "a long task moved to custody (held for hold=)");
                    inner
                        .hooks
                        .at(Point::InCustody {
                            task: claim.message.id,
                        })
                        .await;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(task = %claim.message.id, error = %e.chain(),
                    "moving a long task to custody failed; trying again");
            }
        }
        drop(guard);
        drop(inner);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MOVE_RETRY_MAX);
    }
}

fn queue_args(inner: &Inner, claim: &Claim, ttl: Duration) -> lapin::types::FieldTable {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let expires = ttl_ms.saturating_add(EXPIRES_AFTER.as_millis() as u64);
    topology::custody(&inner.names.work(&claim.message.queue), ttl_ms, expires)
}

fn name(inner: &Inner, claim: &Claim, generation: u64) -> String {
    inner
        .names
        .custody(claim.message.id.0, claim.token, generation)
}

fn copy(inner: &Inner, claim: &Claim, generation: u64) -> Publish {
    Publish {
        exchange: String::new(),
        routing_key: name(inner, claim, generation),
        message: claim.message.clone(),
    }
}

/// Moves a delivery into custody generation 1: `Ok(true)` committed,
/// `Ok(false)` when the commit's answer was lost (the copy and the ack may
/// or may not have applied: the next renewal finds out, as custody
/// generation 1 holds a copy or not), `Err` when nothing was committed (the
/// delivery is still held while its channel lives).
async fn handover(
    inner: &Inner,
    claim: &Claim,
    consumer: &QueueConsumer,
    tag: u64,
    ttl: Duration,
) -> Result<bool, Error> {
    let link = inner.link().await?;
    {
        let admin = link.admin().await?;
        declare(
            &link.health,
            &admin,
            &name(inner, claim, 1),
            queue_args(inner, claim, ttl),
        )
        .await?;
        anchor(&link.health, &admin, &inner.names).await?;
    }
    let _tx = consumer.tx.lock().await;
    let sent = async {
        let h = &consumer.health;
        publish_on(h, &consumer.channel, &copy(inner, claim, 1)).await?;
        ack(h, &consumer.channel, tag).await
    }
    .await;
    if let Err(e) = sent {
        consumer.abandon().await;
        return Err(e);
    }
    inner
        .hooks
        .at(Point::Copied {
            task: claim.message.id,
            generation: 1,
        })
        .await;
    let committed = commit(&consumer.health, &consumer.channel).await;
    consumer.settled(1);
    match committed {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::warn!(task = %claim.message.id, error = %e.chain(),
                "the move to custody may not have applied; the next renewal finds out");
            Ok(false)
        }
    }
}

/// Renews custody `generation`: `Some(next)` when the claim held, `None`
/// when its copy had expired back into the work queue (the claim is lost).
async fn roll(
    inner: &Inner,
    claim: &Claim,
    generation: u64,
    ttl: Duration,
) -> Result<Option<u64>, Error> {
    let link = inner.link().await?;
    let next = generation + 1;
    let next_name = name(inner, claim, next);
    // A copy already there is this claim's own, from a renewal that failed
    // after its publish: take it rather than publish a second.
    let there = {
        let admin = link.admin().await?;
        let there = declare(
            &link.health,
            &admin,
            &next_name,
            queue_args(inner, claim, ttl),
        )
        .await?;
        anchor(&link.health, &admin, &inner.names).await?;
        there
    };
    if there == 0 {
        publish_confirmed(&link, std::slice::from_ref(&copy(inner, claim, next))).await?;
    }
    inner
        .hooks
        .at(Point::Copied {
            task: claim.message.id,
            generation: next,
        })
        .await;
    let removed = delete(&link, &name(inner, claim, generation)).await?;
    if removed == 0 && there == 0 {
        // The copy expired back into the work queue: someone else's now.
        if let Err(e) = delete(&link, &next_name).await {
            tracing::warn!(task = %claim.message.id, error = %e.chain(),
                "could not delete the copy of a lost custody claim; it expires into the work queue");
        }
        return Ok(None);
    }
    Ok(Some(next))
}

/// Settles a claim held in custody, under its lock: on success the claim is
/// done; on `StaleLease` it was lost; on any other error it is still held
/// (in the generation `spot` now names) and the report may be tried again.
pub(crate) async fn settle(
    inner: &Inner,
    link: &Link,
    claim: &Claim,
    spot: &mut Spot,
    plan: Plan,
) -> Result<(), Error> {
    let Place::Custody { generation } = spot.place else {
        return Err(Error::backend_other(
            "settling a claim that is not in custody",
        ));
    };
    let next = match roll(inner, claim, generation, spot.ttl).await? {
        Some(next) => next,
        None => return Err(Error::StaleLease(claim.message.id)),
    };
    spot.place = Place::Custody { generation: next };
    if !spot.published {
        publish_confirmed(link, &plan.publishes).await?;
        spot.published = true;
    }
    delete(link, &name(inner, claim, next)).await?;
    Ok(())
}

async fn delete(link: &Link, name: &str) -> Result<u32, Error> {
    crate::answer::answer(
        &link.health,
        &format!("queue.delete {name}"),
        link.admin()
            .await?
            .queue_delete(name.into(), lapin::options::QueueDeleteOptions::default()),
    )
    .await
}
