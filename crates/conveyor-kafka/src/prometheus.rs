//! A consumer's Prometheus metrics (cargo feature `metrics`): the per-task
//! series every source has (by topic as `queue`, and handler), and what only
//! Kafka has, read from [`ConsumerHandle::metrics`] at each scrape — the lag
//! per partition, the committed offset and high watermark, messages in
//! flight, whether the partitions are paused, and the consumer's counters.

use conveyor::metrics::encode::{counter, gauge};
use conveyor::metrics::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::consumer::{ConsumerHandle, KafkaConsumer};

/// The metrics of `consumer`, counting from now: build them before
/// [`KafkaConsumer::run`] so that no record goes uncounted.
pub fn metrics(consumer: &KafkaConsumer) -> Metrics {
    let mut metrics = Metrics::for_events(&consumer.events());
    metrics
        .registry_mut()
        .register_collector(Box::new(ConsumerSeries {
            handle: consumer.handle(),
        }));
    metrics
}

/// Encodes a consumer's own series on every scrape.
#[derive(Debug)]
struct ConsumerSeries {
    handle: ConsumerHandle,
}

type PartitionLabels = [(&'static str, String); 2];

/// One gauge per partition that has a value.
fn per_partition(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(PartitionLabels, Option<i64>)],
) -> Result<(), std::fmt::Error> {
    let family = Family::<PartitionLabels, Gauge>::default();
    for (labels, value) in values {
        if let Some(v) = value {
            family.get_or_create(labels).set(*v);
        }
    }
    family.encode(e.encode_descriptor(name, help, None, family.metric_type())?)
}

impl Collector for ConsumerSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.handle.metrics();
        let e = &mut encoder;
        let labels = |p: &crate::PartitionMetrics| -> PartitionLabels {
            [
                ("topic", p.topic.clone()),
                ("partition", p.partition.to_string()),
            ]
        };
        let lag: Vec<_> = m.partitions.iter().map(|p| (labels(p), p.lag)).collect();
        per_partition(
            e,
            "kafka_consumer_lag",
            "Messages of the partition not committed yet: high watermark minus committed offset",
            &lag,
        )?;
        let committed: Vec<_> = m
            .partitions
            .iter()
            .map(|p| (labels(p), p.committed))
            .collect();
        per_partition(
            e,
            "kafka_committed_offset",
            "The last offset this consumer committed (the next to read)",
            &committed,
        )?;
        let high: Vec<_> = m
            .partitions
            .iter()
            .map(|p| (labels(p), p.high_watermark))
            .collect();
        per_partition(
            e,
            "kafka_high_watermark",
            "The partition's high watermark, as the client last reported it",
            &high,
        )?;
        gauge(
            e,
            "kafka_in_flight",
            "Messages handed to the executor and not finished",
            m.in_flight as u64,
        )?;
        gauge(
            e,
            "kafka_max_in_flight",
            "The configured limit of messages in flight",
            m.max_in_flight as u64,
        )?;
        gauge(
            e,
            "kafka_waiting",
            "Messages read ahead, waiting for a slot or their key's turn",
            m.waiting as u64,
        )?;
        gauge(
            e,
            "kafka_holding",
            "1 while the consumer holds at the limit: read-ahead full, nothing taken, not paused",
            u64::from(m.holding),
        )?;
        gauge(
            e,
            "kafka_paused",
            "1 while the assigned partitions are paused at the limit",
            u64::from(m.paused),
        )?;
        let c = m.counters;
        counter(
            e,
            "kafka_records_received",
            "Messages taken from Kafka",
            c.received,
        )?;
        counter(
            e,
            "kafka_dead_lettered",
            "Messages written to the dead-letter topic",
            c.dead_lettered,
        )?;
        counter(
            e,
            "kafka_undecodable",
            "Dead-lettered messages that could not be decoded",
            c.undecodable,
        )?;
        counter(
            e,
            "kafka_dead_letter_errors",
            "Dead-letter writes that failed (the message stays uncommitted)",
            c.dead_letter_errors,
        )?;
        counter(
            e,
            "kafka_holds",
            "Times the consumer began holding at the limit",
            c.holds,
        )?;
        counter(
            e,
            "kafka_pauses",
            "Times the consumer paused its partitions at the limit",
            c.pauses,
        )?;
        counter(e, "kafka_commits", "Offset commits sent", c.commits)
    }
}
