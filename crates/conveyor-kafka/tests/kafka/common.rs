//! Helpers shared by the broker tests: fresh topics and groups, producing
//! records, reading a topic back, and the group's committed offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use conveyor_kafka::ConsumerConfig;

pub use conveyor_testkit::kafka_broker::brokers;

/// A topic (and group) name no other test uses.
pub fn fresh(prefix: &str) -> String {
    format!("{prefix}-{:08x}", fastrand::u32(..))
}

/// Creates a fresh topic with `partitions` partitions and returns its name.
pub async fn topic(prefix: &str, partitions: i32) -> String {
    let name = fresh(prefix);
    conveyor_kafka::create_topics(brokers(), &[(&name, partitions)])
        .await
        .expect("create topic");
    name
}

/// A consumer configuration for tests: short session, frequent commits.
pub fn config(topic: &str, group: &str) -> ConsumerConfig {
    ConsumerConfig::new(brokers(), group, [topic])
        .session_timeout(Duration::from_secs(3))
        .commit_interval(Duration::from_millis(100))
        .shutdown_grace(Duration::from_secs(10))
}

/// Produces `(key, payload)` records (spread over partitions by key) and
/// waits for every acknowledgement.
pub fn produce(topic: &str, records: &[(String, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (key, payload) in records {
        let mut record = BaseRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all records acknowledged");
}

/// `n` records over `keys` keys: key `k{i % keys}`, payload `{key}:{seq}` where
/// `seq` counts that key's records from 0.
pub fn keyed_records(n: usize, keys: usize) -> Vec<(String, Vec<u8>)> {
    let mut seqs = vec![0usize; keys];
    (0..n)
        .map(|i| {
            let k = i % keys;
            let key = format!("k{k}");
            let payload = format!("{key}:{}", seqs[k]).into_bytes();
            seqs[k] += 1;
            (key, payload)
        })
        .collect()
}

/// A record read back with its headers.
#[derive(Debug, Clone)]
pub struct Read {
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
}

/// Reads `n` records from every partition of `topic` (0..partitions), from the
/// beginning, waiting at most `timeout`.
pub fn read_topic(topic: &str, partitions: i32, n: usize, timeout: Duration) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", fresh("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    out
}

/// The group's committed offset per partition (`None` where nothing is committed).
pub fn committed(topic: &str, group: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offsets reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// Waits until `f` holds, checking every 20 ms, at most `timeout`.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
