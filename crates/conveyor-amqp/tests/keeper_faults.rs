//! The store beside the broker that keeps the task records, black-holed
//! (a stalled network, a paused server): a report made meanwhile fails
//! before its commit and, settled again once the store is back, ends with
//! its record completed and its result kept; an enqueue made meanwhile
//! fails and publishes nothing. No task is acknowledged with its result
//! dropped, and none is sent without a record.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conveyor_amqp::{AmqpBackend, AmqpOptions};
use conveyor_core::{Backend, Finish, FinishAction, NewTask, SystemClock, TaskState};
use conveyor_testkit::faults::{FaultProxy, Traffic};

/// A RabbitMQ backend whose records are kept by the shared Redis reached
/// through `proxy`.
async fn through(proxy: &FaultProxy) -> AmqpBackend {
    let prefix = common::fresh_prefix();
    let keeper = common::records_store_at(&format!("redis://{}/0", proxy.addr()), &prefix).await;
    AmqpBackend::connect_keeping(
        &common::amqp_url(),
        AmqpOptions::default().prefix(prefix),
        Arc::new(SystemClock),
        Arc::new(keeper),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn redis() -> FaultProxy {
    FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], 6379)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_while_the_store_is_away_is_settled_again_with_its_result() {
    let proxy = redis();
    let b = through(&proxy).await;
    let id = b
        .enqueue(NewTask::new("h", b"1".to_vec()))
        .await
        .unwrap_or_else(|e| panic!("enqueue: {e}"))
        .id;
    let reserved = common::reserve_n(&b, 1, Duration::from_secs(10)).await;
    assert_eq!(reserved.len(), 1, "the task was not delivered");
    let lease = reserved[0].lease.clone();
    let report = || {
        vec![Finish::new(
            lease.clone(),
            FinishAction::Complete {
                result: Some(b"42".to_vec()),
            },
        )]
    };
    proxy.set(Traffic::Blackhole);
    let refused = b.finish(report()).await;
    let err = match refused {
        Err(e) => e,
        Ok(each) => panic!("a report was settled with its record unwritten: {each:?}"),
    };
    assert!(
        err.is_transient(),
        "the worker must settle again: {err} is not transient"
    );
    // Not acknowledged: the broker still holds the delivery.
    assert_eq!(b.depth("default").await.unwrap_or((9, 9)), (0, 0));
    proxy.set(Traffic::Pass);
    let settled = b
        .finish(report())
        .await
        .unwrap_or_else(|e| panic!("the report settled again: {e}"));
    assert!(settled.iter().all(Result::is_ok), "{settled:?}");
    let record = b
        .result_store()
        .unwrap_or_else(|e| panic!("no result store: {e}"))
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .unwrap_or_else(|| panic!("task {id} has no record"));
    assert_eq!(record.state, TaskState::Completed);
    assert_eq!(record.result.as_deref(), Some(&b"42"[..]));
    assert!(
        common::nothing_for(&b, Duration::from_millis(500)).await,
        "the task came back after its report settled"
    );
    common::cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_while_the_store_is_away_fails_and_sends_nothing() {
    let proxy = redis();
    let b = through(&proxy).await;
    // The queue exists, so its depth can be read.
    let first = b
        .enqueue(NewTask::new("h", b"1".to_vec()))
        .await
        .unwrap_or_else(|e| panic!("enqueue: {e}"));
    let got = common::reserve_n(&b, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    b.finish(vec![Finish::new(
        got[0].lease.clone(),
        FinishAction::Complete { result: None },
    )])
    .await
    .unwrap_or_else(|e| panic!("finish {}: {e}", first.id));
    proxy.set(Traffic::Blackhole);
    let refused = b.enqueue(NewTask::new("h", b"2".to_vec())).await;
    assert!(
        refused.is_err(),
        "an enqueue went through without its record"
    );
    proxy.set(Traffic::Pass);
    assert!(
        common::nothing_for(&b, Duration::from_secs(1)).await,
        "a task was published though its enqueue failed"
    );
    assert_eq!(b.depth("default").await.unwrap_or((9, 9)), (0, 0));
    common::cleanup(&b, &["default"]).await;
}
