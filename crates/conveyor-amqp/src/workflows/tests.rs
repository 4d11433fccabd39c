//! The crash window between a settle and the tasks it makes ready, cut
//! open on the real broker and store: the settle's compare-and-set lands
//! and the process "dies" before publishing (`CutShort`). Maintenance's
//! pass creates the task once it finds the node pending unchanged on the
//! pass before (a live settle may be publishing it in between), under the
//! id the settle chose, once.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::workflow::entries::{self, Ended, NodeLink};
use conveyor_core::workflow::{NodeState, WorkflowId, WorkflowSpec};
use conveyor_core::{
    Backend, NewTask, ReserveParams, Reserved, Retention, SystemClock, TaskState, Timestamp,
    DEFAULT_QUEUE,
};
use conveyor_testkit::CutShort;

use crate::{AmqpBackend, AmqpOptions};

/// A backend keeping its records in the test Redis, and that store.
async fn backend() -> (AmqpBackend, conveyor_redis::RedisBackend) {
    let amqp = std::env::var("CONVEYOR_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let redis =
        std::env::var("CONVEYOR_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("tw{}x{}", std::process::id(), fastrand::u32(..));
    let keeper = conveyor_redis::RedisBackend::connect_with(
        &redis,
        &format!("{prefix}:records:"),
        Arc::new(SystemClock),
    )
    .await
    .expect("connect to the test Redis");
    let b = AmqpBackend::connect_keeping(
        &amqp,
        AmqpOptions::default().prefix(prefix),
        Arc::new(SystemClock),
        Arc::new(keeper.clone()),
    )
    .await
    .expect("connect to the test RabbitMQ");
    (b, keeper)
}

async fn reserve(b: &AmqpBackend, n: usize, within: Duration) -> Vec<Reserved> {
    let queues = [DEFAULT_QUEUE.to_string()];
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < deadline {
        let params = ReserveParams::new(&queues, n - got.len(), Duration::from_secs(30));
        got.extend(b.reserve(params).await.expect("reserve"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

/// Submits the chain `first` → `second`, reserves `first` and writes its
/// end (completed with `5`) as a report writes it before its commit,
/// without settling it: the workflow, and that end to settle.
async fn chain_with_first_ended(b: &AmqpBackend) -> (WorkflowId, Ended) {
    let spec = WorkflowSpec::chain([
        NewTask::new("first", b"[1]".to_vec()),
        NewTask::new("second", b"[]".to_vec()),
    ]);
    let id = b
        .workflows()
        .expect("part")
        .submit(spec)
        .await
        .expect("submit")
        .id;
    let first = reserve(b, 1, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 1);
    let results = b.result_store().expect("results");
    let mut record = results
        .get(first[0].lease.id)
        .await
        .expect("read")
        .expect("kept");
    record.state = TaskState::Completed;
    record.result = Some(b"5".to_vec());
    record.finished_at = Some(Timestamp::now());
    let records = b.inner.records.as_ref().expect("kept");
    records.put(&[record]).await.expect("keep");
    let link = NodeLink {
        flow: id.0,
        node: 0,
    };
    let end =
        Ended::of(link, first[0].lease.id.0, TaskState::Completed, Some(b"5")).expect("ended");
    (id, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_left_pending_is_created_by_maintenance_once() {
    let (b, keeper) = backend().await;
    let run = async {
        let flows = b.workflows().expect("part");
        // The settle, cut short after its compare-and-set.
        let (id, end) = chain_with_first_ended(&b).await;
        entries::settle(&CutShort(&*b.inner), vec![end])
            .await
            .expect_err("cut short");
        let w = flows.workflow(id).await.expect("read").expect("there");
        assert_eq!(w.nodes[1].state, NodeState::Running, "decided");
        assert_eq!(w.nodes[1].task, None, "its task not created yet");
        // The first pass only notes it (a live settle may be publishing).
        b.prune_workflows(Retention::default())
            .await
            .expect("prune");
        assert!(reserve(&b, 1, Duration::from_millis(800)).await.is_empty());
        // The second finds it unchanged and creates it; a third, nothing.
        b.prune_workflows(Retention::default())
            .await
            .expect("prune");
        b.prune_workflows(Retention::default())
            .await
            .expect("prune");
        let second = reserve(&b, 2, Duration::from_secs(3)).await;
        assert_eq!(second.len(), 1, "created once");
        assert_eq!(second[0].payload, b"[5]");
        let w = flows.workflow(id).await.expect("read").expect("there");
        assert_eq!(
            w.nodes[1].task,
            Some(second[0].lease.id),
            "under the chosen id"
        );
    };
    run.await;
    b.delete_namespace(&[DEFAULT_QUEUE]).await.expect("delete");
    keeper.clear().await.expect("clear the kept records");
}

/// A settle whose creation failed (the broker away a moment) leaves its
/// ready node pending; the report is sent again, finds nothing left to
/// decide, and creates that node at once rather than leaving it to
/// maintenance a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_heard_again_creates_what_its_failed_settle_left_pending() {
    let (b, keeper) = backend().await;
    let run = async {
        let (_, end) = chain_with_first_ended(&b).await;
        entries::settle(&CutShort(&*b.inner), vec![end.clone()])
            .await
            .expect_err("the creation failed");
        assert!(reserve(&b, 1, Duration::from_millis(500)).await.is_empty());
        // The report again: nothing to decide, the owed node created.
        entries::settle(&*b.inner, vec![end]).await.expect("settle");
        let second = reserve(&b, 1, Duration::from_secs(3)).await;
        assert_eq!(second.len(), 1, "created at once");
        assert_eq!(second[0].payload, b"[5]");
        // And once: maintenance finds nothing left.
        for _ in 0..2 {
            b.prune_workflows(Retention::default())
                .await
                .expect("prune");
        }
        assert!(reserve(&b, 1, Duration::from_millis(800)).await.is_empty());
    };
    run.await;
    b.delete_namespace(&[DEFAULT_QUEUE]).await.expect("delete");
    keeper.clear().await.expect("clear the kept records");
}
