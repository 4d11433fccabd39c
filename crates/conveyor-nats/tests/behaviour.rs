//! What is particular to the NATS backend: any queue name works (it is
//! encoded into subjects and consumer names), ordering keys are refused
//! rather than ignored, and the URL opens a working backend in its
//! namespace. (A stale worker's report after a broker redelivery is in
//! `backstop.rs`.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Error, Finish, ManualClock, NewTask, ReserveParams, TaskState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_queue_name_works() {
    let clock = Arc::new(ManualClock::default());
    let b = common::scoped(common::fresh(clock).await);
    let queues = ["a.b c*>", "émails/2", "_x_", "UP"];
    for q in queues {
        b.enqueue(NewTask::new("h", q.as_bytes().to_vec()).queue(q))
            .await
            .expect("enqueue");
    }
    for q in queues {
        let got = b
            .reserve(ReserveParams::new(
                &[q.to_string()],
                10,
                Duration::from_secs(30),
            ))
            .await
            .expect("reserve");
        assert_eq!(got.len(), 1, "{q}");
        assert_eq!(got[0].queue, q);
        assert_eq!(got[0].payload, q.as_bytes());
        let out = b
            .finish(vec![Finish::complete(got[0].lease.clone())])
            .await
            .expect("finish");
        assert!(out[0].is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_keys_are_refused_not_ignored() {
    let clock = Arc::new(ManualClock::default());
    let b = common::scoped(common::fresh(clock).await);
    assert!(!b.capabilities().ordering_keys);
    let r = b
        .enqueue_many(vec![
            NewTask::new("ok", Vec::new()),
            NewTask::new("k", Vec::new()).ordering_key("k"),
        ])
        .await;
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    let queue = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    assert!(
        b.reserve(ReserveParams::new(&queue, 10, Duration::from_secs(30)))
            .await
            .expect("reserve")
            .is_empty(),
        "nothing of the refused batch was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_opens_a_backend_in_its_namespace() {
    let prefix = common::fresh_prefix();
    let url = format!("{}?prefix={prefix}&ack_wait=5", common::nats_url());
    let b = conveyor_nats::SCHEME.open(&url).await.expect("open");
    assert_eq!(b.kind(), "nats");
    let id = b
        .enqueue(NewTask::new("h", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    assert_eq!(
        b.get(id).await.expect("get").map(|r| r.state),
        Some(TaskState::Available)
    );
    drop(b);
    common::destroy(&common::nats_url(), &prefix);
}
