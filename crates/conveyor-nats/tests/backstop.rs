//! The broker's backstop, in real time: a worker reserves a task and
//! vanishes (no renewal, no report, and nobody runs lease recovery). Once
//! the consumer's `AckWait` passes, JetStream redelivers the message; the
//! record says the lease has run out (on the system clock), so the next
//! reserve takes the task over with the next attempt, and it completes once.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{Finish, NewTask, ReserveParams, SystemClock, TaskState};
use conveyor_nats::{NatsBackend, NatsOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_task_is_redelivered_by_the_broker() {
    let options = NatsOptions {
        prefix: common::fresh_prefix(),
        ack_wait: Duration::from_secs(1),
        ..NatsOptions::default()
    };
    let b = NatsBackend::connect_options(&common::nats_url(), options, Arc::new(SystemClock))
        .await
        .expect("connect");
    let b = common::scoped(b);
    let queue = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    let lease = Duration::from_secs(1);
    let id = b
        .enqueue(NewTask::new("h", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    let lost = b
        .reserve(ReserveParams::new(&queue, 10, lease))
        .await
        .expect("reserve");
    assert_eq!(lost.len(), 1);
    // The worker vanishes here.

    let deadline = Instant::now() + Duration::from_secs(60);
    let again = loop {
        let got = b
            .reserve(ReserveParams::new(&queue, 10, lease))
            .await
            .expect("reserve");
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "never redelivered");
        b.wait_for_work(&queue, Duration::from_millis(200)).await;
    };
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].lease.id, id);
    assert_eq!(again[0].attempt, 2, "the lost attempt counts");
    let out = b
        .finish(vec![
            Finish::complete(lost[0].lease.clone()),
            Finish::complete(again[0].lease.clone()),
        ])
        .await
        .expect("finish");
    assert!(out[0].is_err(), "the vanished worker's report is stale");
    assert!(out[1].is_ok(), "{:?}", out[1]);
    let rec = b.get(id).await.expect("get").expect("task");
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(rec.attempts, 2);
    assert!(
        b.reserve(ReserveParams::new(&queue, 10, lease))
            .await
            .expect("reserve")
            .is_empty(),
        "completed once, never handed out again"
    );
}
