//! Long tasks outlive RabbitMQ's `consumer_timeout`: custody queues.
//!
//! RabbitMQ closes a channel whose delivery stays unacknowledged longer than
//! `consumer_timeout` (30 minutes by default, server-wide before 3.12), and
//! every task held on that channel goes back to its queue while its worker
//! still runs it — Celery workers die of this on long tasks. conveyor never
//! holds a delivery that long. When a task has been held for `hold` (below the
//! server's timeout), the worker moves it into a **custody queue** of its own,
//! `P.custody.ID.GEN`: a quorum queue holding one copy of the task, with a
//! message TTL of one lease, dead-lettering into the task's work queue. The
//! copy's publish and the delivery's ack go in one transaction.
//!
//! From then on the claim is the custody queue. Each renewal declares the next
//! generation with a fresh copy, then deletes the previous one: RabbitMQ
//! answers with how many messages the delete removed, so `1` means the claim
//! held, and `0` means the copy had already expired back into the work queue
//! (this worker stalled for a whole lease) — the claim is lost, the new copy
//! is deleted, and the attempt is cancelled like any lost lease. A worker
//! that dies simply stops renewing: its copy expires into the work queue
//! within one lease, and another worker runs the task (at-least-once).
//!
//! Settling a task in custody first renews (so it owns a fresh copy for a
//! whole lease), then publishes what follows the report with confirms, then
//! deletes the copy. A stale worker therefore publishes nothing, and a crash
//! between the publishes and the delete runs the task again, never loses it.

use std::time::Duration;

use conveyor_core::{Error, Lease};

use crate::backend::{ack, commit, publish_confirmed, publish_on, Inner, Plan, Publish};
use crate::held::{Held, Place};
use crate::link::{declare, Link};
use crate::topology;

/// How long an empty custody queue outlives its copy's TTL before RabbitMQ
/// deletes it (a worker that died leaves one behind).
const EXPIRES_AFTER: Duration = Duration::from_secs(60);

/// Renews one claim: `true` while this worker still holds it.
pub(crate) async fn renew(inner: &Inner, lease: &Lease, ttl: Duration) -> bool {
    let Some(held) = inner.held.get(lease) else {
        return false;
    };
    let token = lease.token;
    let result = match &held.place {
        Place::Delivery { consumer, .. } if !consumer.alive() => Ok(false),
        Place::Delivery { consumer, tag } => {
            if held.since.elapsed() < inner.options.hold {
                return true;
            }
            handover(inner, &held, consumer, *tag, ttl).await.map(|()| {
                inner.held.moved(token, Place::Custody { generation: 1 });
                true
            })
        }
        Place::Custody { generation } => roll(inner, &held, *generation, ttl).await.map(|next| {
            if let Some(next) = next {
                inner.held.moved(token, Place::Custody { generation: next });
            }
            next.is_some()
        }),
    };
    match result {
        Ok(true) => true,
        Ok(false) => {
            inner.held.forget(token);
            false
        }
        Err(e) => {
            // Not known lost: the broker is unreachable. A custody copy keeps
            // the task safe either way; try again at the next renewal.
            tracing::warn!(task = %lease.id, error = %e.chain(), "renewing a custody claim failed");
            matches!(held.place, Place::Custody { .. })
        }
    }
}

fn queue_args(inner: &Inner, held: &Held, ttl: Duration) -> lapin::types::FieldTable {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let expires = ttl_ms.saturating_add(EXPIRES_AFTER.as_millis() as u64);
    topology::custody(&inner.names.work(&held.message.queue), ttl_ms, expires)
}

fn copy(inner: &Inner, held: &Held, generation: u64) -> Publish {
    Publish {
        exchange: String::new(),
        routing_key: inner.names.custody(held.message.id.0, generation),
        message: held.message.clone(),
    }
}

/// Moves a delivery into custody generation 1.
async fn handover(
    inner: &Inner,
    held: &Held,
    consumer: &crate::consumer::QueueConsumer,
    tag: u64,
    ttl: Duration,
) -> Result<(), Error> {
    let link = inner.link().await?;
    let name = inner.names.custody(held.message.id.0, 1);
    declare(&*link.admin().await?, &name, queue_args(inner, held, ttl)).await?;
    let _tx = consumer.tx.lock().await;
    let moved = async {
        publish_on(&consumer.channel, &copy(inner, held, 1)).await?;
        ack(&consumer.channel, tag).await?;
        commit(&consumer.channel).await
    }
    .await;
    consumer.settled(1);
    if moved.is_err() {
        // Nothing committed: the delivery went back with its channel.
        let _ = delete(&link, &name).await;
    } else {
        tracing::info!(task = %held.message.id, queue = %held.message.queue,
            "a long task moved to custody (held longer than hold=)");
    }
    moved
}

/// Renews custody `generation`: `Some(next)` when the claim held.
async fn roll(
    inner: &Inner,
    held: &Held,
    generation: u64,
    ttl: Duration,
) -> Result<Option<u64>, Error> {
    let link = inner.link().await?;
    let next = generation + 1;
    let next_name = inner.names.custody(held.message.id.0, next);
    declare(
        &*link.admin().await?,
        &next_name,
        queue_args(inner, held, ttl),
    )
    .await?;
    publish_confirmed(&link, std::slice::from_ref(&copy(inner, held, next))).await?;
    let removed = delete(&link, &inner.names.custody(held.message.id.0, generation)).await?;
    if removed == 0 {
        // The copy expired back into the work queue: someone else's now.
        delete(&link, &next_name).await?;
        return Ok(None);
    }
    Ok(Some(next))
}

/// Settles a task held in custody `generation`.
pub(crate) async fn settle(
    inner: &Inner,
    link: &Link,
    held: Held,
    generation: u64,
    mut plan: Plan,
) -> Result<(), Error> {
    let Some(next) = roll(inner, &held, generation, held.lease).await? else {
        return Err(Error::StaleLease(held.message.id));
    };
    if plan.requeue {
        plan.publishes
            .push(inner.route(held.message.clone(), inner.clock.now()));
    }
    publish_confirmed(link, &plan.publishes).await?;
    delete(link, &inner.names.custody(held.message.id.0, next)).await?;
    Ok(())
}

async fn delete(link: &Link, name: &str) -> Result<u32, Error> {
    link.admin()
        .await?
        .queue_delete(name.into(), lapin::options::QueueDeleteOptions::default())
        .await
        .map_err(|e| crate::error::amqp_error(&format!("queue.delete {name}"), e))
}
