//! What a backend publishes: where a message goes (its queue, the delay
//! ladder, the dead-letter queue), and publishing it on a channel, with a
//! broker confirmation or inside a transaction.

use std::time::Duration;

use conveyor_core::{Error, Timestamp};
use lapin::options::{BasicAckOptions, BasicPublishOptions};
use lapin::Channel;
use lapin::{Confirmation, PublisherConfirm};

use super::Inner;
use crate::answer::{answer, within, Health};
use crate::delay;
use crate::error::amqp_error;
use crate::link::Link;
use crate::message::TaskMessage;
use crate::names::{self};

/// What to publish for a report, before its delivery is settled.
pub(crate) struct Publish {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) message: TaskMessage,
}

impl Inner {
    /// Where `message` goes to wait for its due time, given `now`.
    pub(crate) fn route(&self, message: TaskMessage, now: Timestamp) -> Publish {
        if message.due_at.0 > now.0 {
            let ms = u64::try_from(message.due_at.0 - now.0).unwrap_or(0);
            return self.delayed(message, Duration::from_millis(ms));
        }
        Publish {
            exchange: String::new(),
            routing_key: self.names.work(&message.queue),
            message,
        }
    }

    /// `message` unchanged, through the delay ladder: delivered again to its
    /// work queue after `delay`.
    pub(crate) fn delayed(&self, message: TaskMessage, delay: Duration) -> Publish {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(delay::MAX_PASS_MS);
        Publish {
            exchange: self.names.delay(delay::LEVELS - 1),
            routing_key: delay::routing_key(ms, &names::word(&message.queue)),
            message,
        }
    }

    /// A dead letter of `message` into its queue's dead queue.
    pub(crate) fn dead_letter(&self, message: TaskMessage) -> Publish {
        Publish {
            exchange: String::new(),
            routing_key: self.names.dead(&message.queue),
            message,
        }
    }

    /// Declares what `publishes` need: their queues, and the ladder if any
    /// of them is delayed.
    pub(crate) async fn prepare(&self, link: &Link, publishes: &[&Publish]) -> Result<(), Error> {
        for p in publishes {
            link.ensure_queue(&self.names, &p.message.queue, self.options.delivery_limit)
                .await?;
            if !p.exchange.is_empty() {
                link.ensure_ladder(&self.names).await?;
            }
        }
        Ok(())
    }
}

/// Publishes on `channel` (no confirm: inside a transaction, or the caller
/// awaits the confirm).
pub(crate) async fn publish_on(
    health: &Health,
    channel: &Channel,
    p: &Publish,
) -> Result<PublisherConfirm, Error> {
    answer(
        health,
        "basic.publish",
        channel.basic_publish(
            p.exchange.as_str().into(),
            p.routing_key.as_str().into(),
            BasicPublishOptions::default(),
            &p.message.payload,
            p.message.properties(),
        ),
    )
    .await
}

pub(crate) async fn ack(health: &Health, channel: &Channel, tag: u64) -> Result<(), Error> {
    answer(
        health,
        "basic.ack",
        channel.basic_ack(tag, BasicAckOptions::default()),
    )
    .await
}

pub(crate) async fn commit(health: &Health, channel: &Channel) -> Result<(), Error> {
    answer(health, "tx.commit", channel.tx_commit()).await
}

/// Publishes every message with confirms and waits for all of them, at
/// most [`ANSWER_WITHIN`](crate::answer::ANSWER_WITHIN) for the lot.
pub(crate) async fn publish_confirmed(link: &Link, publishes: &[Publish]) -> Result<(), Error> {
    within(
        &link.health,
        "publish (confirms)",
        confirmed(link, publishes),
    )
    .await
}

async fn confirmed(link: &Link, publishes: &[Publish]) -> Result<(), Error> {
    let h = &link.health;
    // Every publish is queued at once (the futures are first polled in
    // order, so the messages keep their order), then every confirm awaited.
    let confirms =
        futures_util::future::join_all(publishes.iter().map(|p| publish_on(h, &link.publisher, p)))
            .await;
    for c in confirms {
        let c = c?;
        match c.await.map_err(|e| amqp_error("publisher confirm", e))? {
            Confirmation::Ack(_) | Confirmation::NotRequested => {}
            Confirmation::Nack(_) => {
                return Err(Error::backend(
                    conveyor_core::BackendErrorKind::Busy,
                    "amqp publish: the broker refused a message (nack); nothing was lost \
                     that was confirmed, retry",
                ))
            }
        }
    }
    Ok(())
}
