//! Consume a Kafka topic with conveyor: 2,000 JSON orders over 100 customers,
//! each taking 0–5 ms, in key order (a customer's orders one at a time, in
//! order; customers in parallel), at most 50 in flight. One order in 100 is
//! declined: it is retried 3 times with backoff, then written to the
//! dead-letter topic with headers saying why.
//!
//! Needs a broker on 127.0.0.1:9092 (or `CONVEYOR_KAFKA_BROKERS`):
//!
//! ```sh
//! scripts/kafka-broker.sh install && scripts/kafka-broker.sh start
//! cargo run --release -p conveyor-kafka --example kafka_orders
//! ```

use std::time::{Duration, Instant};

use conveyor::{Handler, RetryPolicy, TaskError};
use conveyor_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use conveyor_kafka::rdkafka::ClientConfig;
use conveyor_kafka::{decode, ConsumerConfig, KafkaConsumer, Ordering};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    amount_cents: u64,
}

const ORDERS: u64 = 2_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers =
        std::env::var("CONVEYOR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let run = std::process::id();
    let topic = format!("orders-example-{run}");
    conveyor_kafka::create_topics(&brokers, &[(&topic, 4)]).await?;
    produce(&brokers, &topic)?;

    let charge = Handler::io("charge", |order: Order, _ctx| async move {
        tokio::time::sleep(Duration::from_micros(fastrand::u64(0..5_000))).await;
        if order.id % 100 == 42 {
            return Err(TaskError::new(format!(
                "card of {} declined for {} cents",
                order.customer, order.amount_cents
            )));
        }
        Ok(order.amount_cents)
    })
    .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(20), Duration::from_millis(200)));

    let config = ConsumerConfig::new(&brokers, format!("billing-{run}"), [&topic])
        .ordering(Ordering::Key)
        .max_in_flight(50)
        .session_timeout(Duration::from_secs(6));
    let consumer = KafkaConsumer::builder(config).handler_with(charge, decode::json::<Order>())?;
    let handle = consumer.handle();
    let started = Instant::now();
    let running = tokio::spawn(consumer.run());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = handle.metrics();
        if m.runner.completed + m.counters.dead_lettered >= ORDERS {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!("giving up after 60 s: {m:?}");
            break;
        }
    }
    let elapsed = started.elapsed();
    // Commits run every second: wait for the last one to show the lag at 0.
    let mut metrics = handle.metrics();
    for _ in 0..30 {
        if metrics.partitions.iter().all(|p| p.lag == Some(0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = handle.metrics();
    }
    handle.shutdown();
    let report = running.await??;
    let c = report.counters;
    println!(
        "{} orders in {:.2} s: {} charged, {} dead-lettered to {topic}.dlq, {} pauses at the limit",
        c.received,
        elapsed.as_secs_f64(),
        report.runner.completed,
        c.dead_lettered,
        c.pauses
    );
    for p in metrics.partitions {
        println!(
            "  partition {}: committed {:?}, high watermark {:?}, lag {:?}",
            p.partition, p.committed, p.high_watermark, p.lag
        );
    }
    Ok(())
}

/// Produces the orders: key = customer, so a customer's orders share a partition.
fn produce(brokers: &str, topic: &str) -> Result<(), Box<dyn std::error::Error>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    for id in 0..ORDERS {
        let customer = format!("customer-{}", id % 100);
        let payload = serde_json::json!({
            "id": id,
            "customer": customer,
            "amount_cents": 100 + (id * 7919) % 50_000,
        })
        .to_string();
        let mut record = BaseRecord::to(topic).key(&customer).payload(&payload);
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}
