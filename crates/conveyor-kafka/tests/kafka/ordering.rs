//! Ordering modes against the real broker: key order holds while keys run in
//! parallel; partition order holds per partition.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{Handler, TaskError};
use conveyor_kafka::{KafkaConsumer, Message, Ordering};

use crate::common::{self, eventually};

/// Runs a consumer over `records` in `ordering` mode; returns, per key, the
/// payload sequence numbers in processing order, and the most messages seen
/// running at once. Fails if two messages of one order group (key or
/// partition) ever run at once.
async fn consume(
    ordering: Ordering,
    partitions: i32,
    records: &[(String, Vec<u8>)],
) -> (HashMap<String, Vec<usize>>, usize) {
    let topic = common::topic("order", partitions).await;
    common::produce(&topic, records);
    let seen: Arc<Mutex<HashMap<String, Vec<usize>>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler = {
        let (seen, running, now, peak) = (seen.clone(), running.clone(), now.clone(), peak.clone());
        Handler::io("order", move |m: Message, _ctx| {
            let (seen, running, now, peak) =
                (seen.clone(), running.clone(), now.clone(), peak.clone());
            async move {
                let group = match ordering {
                    Ordering::Partition => m.partition().to_string(),
                    _ => m.key_str().unwrap_or("-").to_string(),
                };
                let seq: usize = m
                    .payload_str()
                    .and_then(|p| p.rsplit(':').next())
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| TaskError::permanent("bad payload"))?;
                {
                    let mut r = running.lock().expect("lock");
                    let n = r.entry(group.clone()).or_default();
                    *n += 1;
                    assert_eq!(*n, 1, "two messages of {group} ran at once");
                }
                let c = now.fetch_add(1, AtomicOrdering::SeqCst) + 1;
                peak.fetch_max(c, AtomicOrdering::SeqCst);
                tokio::time::sleep(Duration::from_micros(fastrand::u64(0..2000))).await;
                now.fetch_sub(1, AtomicOrdering::SeqCst);
                *running.lock().expect("lock").entry(group).or_default() -= 1;
                let key = m.key_str().unwrap_or("-").to_string();
                seen.lock().expect("lock").entry(key).or_default().push(seq);
                Ok::<_, TaskError>(())
            }
        })
    };
    let config = common::config(&topic, &common::fresh("g"))
        .ordering(ordering)
        .max_in_flight(32);
    let consumer = KafkaConsumer::builder(config)
        .handler(handler)
        .expect("consumer");
    let handle = consumer.handle();
    let run = tokio::spawn(consumer.run());
    let total = records.len();
    let done = eventually(Duration::from_secs(40), || {
        handle.metrics().runner.completed as usize >= total
    })
    .await;
    handle.shutdown();
    let report = run.await.expect("join").expect("run");
    assert!(
        done,
        "only {} of {total} processed",
        report.runner.completed
    );
    assert_eq!(report.counters.dead_lettered, 0);
    let seen = seen.lock().expect("lock").clone();
    (seen, peak.load(AtomicOrdering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_holds_while_keys_run_in_parallel() {
    let records = common::keyed_records(1200, 40);
    let (seen, peak) = consume(Ordering::Key, 3, &records).await;
    assert_eq!(seen.len(), 40);
    for (key, seqs) in &seen {
        let expected: Vec<usize> = (0..seqs.len()).collect();
        assert_eq!(seqs, &expected, "key {key} out of order");
        assert_eq!(seqs.len(), 30, "key {key}");
    }
    assert!(peak > 4, "keys should run in parallel (peak {peak})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_holds_per_partition() {
    let partitions = 3;
    let records = common::keyed_records(300, 30);
    let (seen, peak) = consume(Ordering::Partition, partitions, &records).await;
    let processed: usize = seen.values().map(Vec::len).sum();
    assert_eq!(processed, 300);
    // A key's records share a partition, which runs in offset order.
    for (key, seqs) in &seen {
        let expected: Vec<usize> = (0..seqs.len()).collect();
        assert_eq!(seqs, &expected, "key {key} out of order");
    }
    assert!(
        peak <= partitions as usize,
        "at most one per partition (peak {peak})"
    );
}
