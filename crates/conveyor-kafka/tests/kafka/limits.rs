//! The in-flight limit: never more than N messages in processing; at the limit
//! (with the read-ahead full) the partitions are paused — nothing more is
//! taken — and resumed as slots free.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::{Handler, TaskError};
use conveyor_kafka::{KafkaConsumer, Message, Ordering};
use tokio::sync::Semaphore;

use crate::common::{self, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_never_above_the_limit_and_paused_at_it() {
    const LIMIT: usize = 5;
    const READ_AHEAD: usize = 3;
    const TOTAL: usize = 200;
    let topic = common::topic("limit", 2).await;
    common::produce(&topic, &common::keyed_records(TOTAL, 50));

    // Handlers wait for a permit of `gate`: closed at first, so the consumer
    // fills up to the limit and must pause.
    let gate = Arc::new(Semaphore::new(0));
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler = {
        let (gate, now, peak) = (gate.clone(), now.clone(), peak.clone());
        Handler::io("gated", move |_m: Message, _ctx| {
            let (gate, now, peak) = (gate.clone(), now.clone(), peak.clone());
            async move {
                let c = now.fetch_add(1, AtomicOrdering::SeqCst) + 1;
                peak.fetch_max(c, AtomicOrdering::SeqCst);
                gate.acquire().await.map_err(TaskError::from)?.forget();
                now.fetch_sub(1, AtomicOrdering::SeqCst);
                Ok::<_, TaskError>(())
            }
        })
    };
    let config = common::config(&topic, &common::fresh("g"))
        .ordering(Ordering::Unordered)
        .max_in_flight(LIMIT)
        .read_ahead(READ_AHEAD);
    let consumer = KafkaConsumer::builder(config)
        .handler(handler)
        .expect("consumer");
    let handle = consumer.handle();
    let run = tokio::spawn(consumer.run());

    let full = eventually(Duration::from_secs(30), || {
        let m = handle.metrics();
        m.in_flight == LIMIT && m.waiting == READ_AHEAD && m.paused
    })
    .await;
    assert!(full, "never reached the limit: {:?}", handle.metrics());
    // While paused, nothing more is taken: give the client time to prove it.
    let before = handle.metrics().counters.received;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m = handle.metrics();
    assert_eq!(m.in_flight, LIMIT);
    assert!(m.paused);
    assert_eq!(
        m.counters.received, before,
        "messages taken while paused: {m:?}"
    );
    assert_eq!(m.waiting, READ_AHEAD);

    // Open the gate one message at a time: each freed slot resumes at once.
    for _ in 0..20 {
        gate.add_permits(1);
    }
    let moved = eventually(Duration::from_secs(20), || {
        handle.metrics().runner.completed >= 20
    })
    .await;
    assert!(moved, "did not resume: {:?}", handle.metrics());
    gate.add_permits(TOTAL);
    let done = eventually(Duration::from_secs(30), || {
        handle.metrics().runner.completed as usize >= TOTAL
    })
    .await;
    let m = handle.metrics();
    handle.shutdown();
    let report = run.await.expect("join").expect("run");
    assert!(
        done,
        "only {} of {TOTAL} processed",
        report.runner.completed
    );
    assert!(
        peak.load(AtomicOrdering::SeqCst) <= LIMIT,
        "peak above the limit"
    );
    assert!(
        m.counters.pauses >= 2,
        "paused and resumed repeatedly: {m:?}"
    );
}
