//! The RabbitMQ floor: a hand-written lapin loop on the same broker, so
//! conveyor's processed rates on `amqp://` can be read against what the
//! broker itself allows on this machine, not only against Celery.
//!
//! The loop does the least a correct consumer must: one durable quorum queue
//! (as conveyor uses), messages published with confirms, then one consumer
//! with a prefetch of `slots` that acknowledges what it got (no transaction,
//! no record, no retry copy). Nothing is decoded and no handler runs. Two
//! ways to acknowledge: every delivery on its own (the plain loop most
//! hand-written consumers are), or in batches (`multiple`, once half the
//! prefetch is in: the fastest a consumer of this broker can be, and so the
//! ceiling of this machine). What conveyor costs below the second is the
//! price of its task model (reports settled atomically with their retry
//! copy or follow-ups, delays, custody).

use std::time::Instant;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::report::Measured;

/// How the bare consumer acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `basic.ack` per delivery.
    Each,
    /// One `basic.ack` with `multiple` per half prefetch.
    Batched,
}

/// Publishes `n` messages, then consumes and acks them all with a prefetch of
/// `slots`; the consumed messages per second, or why there is no figure (a
/// call failed, or the consumer ended before the n-th message).
pub async fn consume_rate(url: &str, n: usize, slots: u16, acks: Acks) -> Measured {
    let broker = url.split('?').next().unwrap_or(url);
    let connection = Connection::connect(broker, ConnectionProperties::default())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let queue = format!("conveyor-bench-bare-{}-{slots}", std::process::id());
    let result = run(&connection, &queue, n, slots, acks).await;
    if let Ok(admin) = connection.create_channel().await {
        let _ = admin
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
    result
}

/// Says which step failed.
fn err(what: &'static str) -> impl Fn(lapin::Error) -> String {
    move |e| format!("{what}: {e}")
}

async fn run(connection: &Connection, queue: &str, n: usize, slots: u16, acks: Acks) -> Measured {
    let publisher = connection
        .create_channel()
        .await
        .map_err(err("open a channel"))?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(err("confirm select"))?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    publisher
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(err("declare the queue"))?;
    // Published in windows of 1,000 confirms, as conveyor's batched enqueue.
    for start in (0..n).step_by(1_000) {
        let mut confirms = Vec::with_capacity(1_000);
        for i in start..(start + 1_000).min(n) {
            let body = i.to_string();
            confirms.push(
                publisher
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .map_err(err("publish"))?,
            );
        }
        for c in confirms {
            c.await.map_err(err("publish confirm"))?;
        }
    }

    let consumer_channel = connection
        .create_channel()
        .await
        .map_err(err("open a channel"))?;
    consumer_channel
        .basic_qos(slots, BasicQosOptions::default())
        .await
        .map_err(err("qos"))?;
    let started = Instant::now();
    let mut deliveries = consumer_channel
        .basic_consume(
            queue.into(),
            "bare".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err("consume"))?;
    let every = match acks {
        Acks::Each => 1,
        Acks::Batched => usize::from(slots / 2).max(1),
    };
    let mut seen = 0;
    while seen < n {
        let next = tokio::time::timeout(crate::report::WORKLOAD_LIMIT, deliveries.next());
        let delivery = match next.await {
            Ok(Some(delivery)) => delivery.map_err(err("a delivery"))?,
            Ok(None) => return Err(format!("the consumer ended after {seen} of {n} messages")),
            Err(_) => return Err(format!("no delivery after {seen} of {n} messages")),
        };
        seen += 1;
        if seen % every == 0 || seen == n {
            let multiple = every > 1;
            delivery
                .ack(BasicAckOptions { multiple })
                .await
                .map_err(err("ack"))?;
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
