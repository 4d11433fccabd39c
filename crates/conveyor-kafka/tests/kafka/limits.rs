//! The in-flight limit: never more than N messages in processing; at the limit
//! (with the read-ahead full) nothing more is taken: the consumer holds, and
//! pauses the partitions once it has held for `pause_after`; it resumes as
//! slots free. A hold that ends within `pause_after` never pauses.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::{Handler, TaskError};
use conveyor_kafka::{ConsumerConfig, ConsumerHandle, KafkaConsumer, Message, Ordering, RunReport};
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
    let peak = Arc::new(AtomicUsize::new(0));
    let config = common::config(&topic, &common::fresh("g"))
        .max_in_flight(LIMIT)
        .read_ahead(READ_AHEAD)
        .pause_after(Duration::from_millis(200));
    let (handle, run) = start_gated(config, &gate, &peak);

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
    assert!(!m.holding, "paused, no longer holding: {m:?}");
    assert!(m.counters.holds >= 1, "held before it paused: {m:?}");
    assert_eq!(
        m.counters.received, before,
        "messages taken while paused: {m:?}"
    );
    assert_eq!(m.waiting, READ_AHEAD);

    // Let 20 messages through: the freed slots resume the partitions at
    // once; then the consumer fills up again and, held for `pause_after`,
    // pauses a second time.
    gate.add_permits(20);
    let moved = eventually(Duration::from_secs(20), || {
        let m = handle.metrics();
        m.runner.completed >= 20 && m.paused && m.counters.pauses >= 2
    })
    .await;
    assert!(
        moved,
        "did not resume and pause again: {:?}",
        handle.metrics()
    );
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

/// Full, the consumer takes nothing more but does not pause before
/// `pause_after`: the client keeps its prefetch, and room freed in time lets
/// the consumer go on without a pause (and so without a refetch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_that_ends_in_time_never_pauses() {
    const LIMIT: usize = 4;
    const READ_AHEAD: usize = 8;
    const TOTAL: usize = 100;
    let topic = common::topic("hold", 2).await;
    common::produce(&topic, &common::keyed_records(TOTAL, 20));

    let gate = Arc::new(Semaphore::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let config = common::config(&topic, &common::fresh("g"))
        .max_in_flight(LIMIT)
        .read_ahead(READ_AHEAD)
        .pause_after(Duration::from_secs(60));
    let (handle, run) = start_gated(config, &gate, &peak);

    let full = eventually(Duration::from_secs(30), || {
        let m = handle.metrics();
        m.in_flight == LIMIT && m.waiting == READ_AHEAD
    })
    .await;
    assert!(full, "never reached the limit: {:?}", handle.metrics());
    // Holding: nothing more is taken, and the partitions are not paused.
    let before = handle.metrics().counters.received;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m = handle.metrics();
    assert_eq!(
        m.counters.received, before,
        "messages taken while holding: {m:?}"
    );
    assert_eq!((m.in_flight, m.waiting), (LIMIT, READ_AHEAD), "{m:?}");
    assert!(!m.paused, "paused before pause_after: {m:?}");
    assert!(m.holding, "not reported as holding: {m:?}");
    assert_eq!(m.counters.holds, 1, "{m:?}");

    // Room, one message at a time: the hold ends each time, with no pause.
    for done in 1..=TOTAL {
        gate.add_permits(1);
        let moved = eventually(Duration::from_secs(20), || {
            handle.metrics().runner.completed as usize >= done
        })
        .await;
        assert!(
            moved,
            "stuck after {} of {TOTAL}: {:?}",
            done - 1,
            handle.metrics()
        );
    }
    let m = handle.metrics();
    handle.shutdown();
    let report = run.await.expect("join").expect("run");
    assert_eq!(report.runner.completed as usize, TOTAL);
    assert_eq!(m.counters.pauses, 0, "paused: {m:?}");
    assert!(
        peak.load(AtomicOrdering::SeqCst) <= LIMIT,
        "peak above the limit"
    );
    assert!(m.counters.holds >= 1, "{m:?}");
    assert_eq!(m.counters.received as usize, TOTAL, "{m:?}");
}

/// Starts an unordered consumer whose handler waits for a permit of `gate`
/// (closed at first, so the consumer fills up to its limit), keeping in
/// `peak` the most messages it ever ran at once.
fn start_gated(
    config: ConsumerConfig,
    gate: &Arc<Semaphore>,
    peak: &Arc<AtomicUsize>,
) -> (
    ConsumerHandle,
    tokio::task::JoinHandle<Result<RunReport, conveyor_kafka::Error>>,
) {
    let now = Arc::new(AtomicUsize::new(0));
    let (gate, peak) = (gate.clone(), peak.clone());
    let handler = Handler::io("gated", move |_m: Message, _ctx| {
        let (gate, now, peak) = (gate.clone(), now.clone(), peak.clone());
        async move {
            let c = now.fetch_add(1, AtomicOrdering::SeqCst) + 1;
            peak.fetch_max(c, AtomicOrdering::SeqCst);
            gate.acquire().await.map_err(TaskError::from)?.forget();
            now.fetch_sub(1, AtomicOrdering::SeqCst);
            Ok::<_, TaskError>(())
        }
    });
    let consumer = KafkaConsumer::builder(config.ordering(Ordering::Unordered))
        .handler(handler)
        .expect("consumer");
    let handle = consumer.handle();
    (handle, tokio::spawn(consumer.run()))
}
