//! Failures: retried with backoff, then written to the dead-letter topic with
//! headers; undecodable records go there too; the consumer goes on and commits
//! past them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{Handler, RetryPolicy, TaskError};
use conveyor_kafka::{decode, DeadLetter, KafkaConsumer};
use serde::Deserialize;

use crate::common::{self, eventually};

#[derive(Debug, Clone, Deserialize)]
struct Order {
    id: u32,
    ok: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_go_to_the_dead_letter_topic_after_retries() {
    let topic = common::topic("dlq", 2).await;
    let dlq = format!("{topic}.failed");
    conveyor_kafka::create_topics(common::brokers(), &[(&dlq, 1)])
        .await
        .expect("dlq topic");
    let mut records = Vec::new();
    for id in 0..40u32 {
        let ok = id % 8 != 3; // 5 failing orders
        let payload = format!(r#"{{"id": {id}, "ok": {ok}}}"#);
        records.push((format!("k{}", id % 7), payload.into_bytes()));
    }
    for bad in ["not json", "{\"id\": \"x\"}", ""] {
        records.push(("k-bad".to_string(), bad.as_bytes().to_vec()));
    }
    common::produce(&topic, &records);

    let attempts: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let handler = {
        let attempts = attempts.clone();
        Handler::io("charge", move |o: Order, ctx| {
            let attempts = attempts.clone();
            async move {
                *attempts.lock().expect("lock").entry(o.id).or_default() = ctx.attempt();
                if o.ok {
                    Ok(o.id)
                } else {
                    Err(TaskError::new(format!("card declined for order {}", o.id)))
                }
            }
        })
        .retry(
            RetryPolicy::attempts(3).backoff(Duration::from_millis(20), Duration::from_millis(50)),
        )
    };
    let group = common::fresh("g");
    let config = common::config(&topic, &group)
        .max_in_flight(10)
        .dead_letter(DeadLetter::Topic(dlq.clone()));
    let consumer = KafkaConsumer::builder(config)
        .handler_with(handler, decode::json::<Order>())
        .expect("consumer");
    let handle = consumer.handle();
    #[cfg(feature = "metrics")]
    let metrics = conveyor_kafka::prometheus::metrics(&consumer);
    let run = tokio::spawn(consumer.run());
    let done = eventually(Duration::from_secs(40), || {
        let m = handle.metrics();
        m.runner.completed + m.counters.dead_lettered >= records.len() as u64
    })
    .await;
    // Everything finished, so the commit catches up with the end of each partition.
    let caught_up = eventually(Duration::from_secs(10), || {
        handle
            .metrics()
            .partitions
            .iter()
            .all(|p| p.committed == p.next_offset && p.unfinished == 0)
    })
    .await;
    #[cfg(feature = "metrics")]
    {
        // The high watermark comes with the client's statistics, every second.
        let settled = eventually(Duration::from_secs(10), || {
            handle.metrics().partitions.iter().all(|p| p.lag == Some(0))
        })
        .await;
        assert!(settled, "lag: {:?}", handle.metrics().partitions);
        let text = metrics.encode();
        let values = |prefix: &str| -> Vec<f64> {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect()
        };
        assert_eq!(
            values("conveyor_kafka_consumer_lag{"),
            vec![0.0, 0.0],
            "{text}"
        );
        assert_eq!(values("conveyor_kafka_records_received_total"), vec![43.0]);
        assert_eq!(values("conveyor_kafka_dead_lettered_total"), vec![8.0]);
        assert_eq!(values("conveyor_kafka_undecodable_total"), vec![3.0]);
        let succeeded =
            format!("conveyor_tasks_succeeded_total{{queue=\"{topic}\",handler=\"charge\"}}");
        assert_eq!(values(&succeeded), vec![35.0], "{text}");
    }
    handle.shutdown();
    let report = run.await.expect("join").expect("run");
    assert!(done, "not all finished: {:?}", report.counters);
    assert!(caught_up, "commits did not catch up");
    assert_eq!(report.runner.completed, 35);
    assert_eq!(report.counters.dead_lettered, 8);
    assert_eq!(report.counters.undecodable, 3);
    let committed: i64 = common::committed(&topic, &group, 2).iter().flatten().sum();
    assert_eq!(
        committed,
        records.len() as i64,
        "committed past the failures"
    );

    let letters = common::read_topic(&dlq, 1, 8, Duration::from_secs(20));
    assert_eq!(letters.len(), 8);
    let mut failed = 0;
    for l in &letters {
        let h = &l.headers;
        assert_eq!(h.get("conveyor.topic"), Some(&topic));
        assert_eq!(h.get("conveyor.group"), Some(&group));
        assert!(h
            .get("conveyor.partition")
            .is_some_and(|p| p.parse::<i32>().is_ok()));
        assert!(h
            .get("conveyor.offset")
            .is_some_and(|o| o.parse::<i64>().is_ok()));
        match h.get("conveyor.reason").map(String::as_str) {
            Some("failed") => {
                failed += 1;
                let order: Order = serde_json::from_slice(l.payload.as_deref().unwrap_or_default())
                    .expect("the original payload");
                assert!(!order.ok);
                assert_eq!(h.get("conveyor.attempts").map(String::as_str), Some("3"));
                assert!(h
                    .get("conveyor.error")
                    .is_some_and(|e| e.starts_with("card declined")));
            }
            Some("undecodable") => {
                assert_eq!(l.key.as_deref(), Some("k-bad"));
                assert!(h.get("conveyor.error").is_some_and(|e| !e.is_empty()));
            }
            other => panic!("unexpected reason {other:?}"),
        }
    }
    assert_eq!(failed, 5);
    let attempts = attempts.lock().expect("lock");
    for (id, n) in attempts.iter() {
        let expected = if id % 8 == 3 { 3 } else { 1 };
        assert_eq!(*n, expected, "order {id}");
    }
}
