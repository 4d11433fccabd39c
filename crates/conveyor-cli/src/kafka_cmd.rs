//! `conveyor kafka …`: a load generator for Kafka topics.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use conveyor_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use conveyor_kafka::rdkafka::ClientConfig;

use crate::fake_record::{plain, Generator};

/// `conveyor kafka …`.
#[derive(Debug, Subcommand)]
pub enum KafkaCommand {
    /// Produce N keyed records to a topic (created if missing): plain
    /// `{"seq", "key"}` records, or realistic fake payments with --fake.
    Produce(ProduceArgs),
}

/// `conveyor kafka produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Bootstrap brokers, host:port[,host:port…].
    #[arg(long, env = "CONVEYOR_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// Records to produce.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Distinct keys (records cycle through them).
    #[arg(long, default_value_t = 100)]
    pub keys: u64,
    /// Fake payments: customer names, e-mail and postal addresses, amounts.
    #[arg(long)]
    pub fake: bool,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Seed of the fake data (same seed, same records).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs a `conveyor kafka` command.
pub async fn run(cmd: KafkaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KafkaCommand::Produce(args) => produce(args).await,
    }
}

async fn produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    conveyor_kafka::create_topics(&args.brokers, &[(&args.topic, args.partitions)])
        .await
        .with_context(|| format!("creating topic {} on {}", args.topic, args.brokers))?;
    let started = Instant::now();
    let count = args.count;
    let topic = args.topic.clone();
    let n = tokio::task::spawn_blocking(move || send_all(&args))
        .await
        .context("the producing thread")??;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {n} of {count} records to {topic} in {secs:.2} s ({:.0} records/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(if n == count {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Sends every record and waits for the acknowledgements; returns how many
/// were acknowledged.
fn send_all(args: &ProduceArgs) -> anyhow::Result<u64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .context("creating the producer")?;
    let mut fake = args.fake.then(|| Generator::new(args.seed, args.keys));
    for seq in 0..args.count {
        let (key, payload) = match fake.as_mut() {
            Some(g) => g.record(seq),
            None => plain(seq, args.keys),
        };
        let mut record = BaseRecord::to(&args.topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        // A full local queue: serve deliveries, then try again.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(conveyor_kafka::rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        anyhow::bail!("producing record {seq}: {e}");
                    }
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the broker's acknowledgements")?;
    Ok(args.count)
}
