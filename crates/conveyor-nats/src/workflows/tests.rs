//! The crash windows between a node task's end and its settle, and between
//! a settle and the tasks it makes ready, cut open by hand on a real
//! server: the end is written as the finish writes it, and the process
//! "dies" before the next step.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::workflow::{NodeState, WorkflowSpec, WorkflowState};
use conveyor_core::{
    Backend, Maintenance, ManualClock, NewTask, ReserveParams, Reserved, ResultStore, Retention,
    TaskState, Transition, DEFAULT_QUEUE,
};

use conveyor_core::workflow::entries;
use conveyor_testkit::CutShort;

use super::ended;
use crate::backend::NatsBackend;

pub(crate) async fn backend(clock: Arc<ManualClock>) -> NatsBackend {
    let url =
        std::env::var("CONVEYOR_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string());
    let prefix = format!("cvw{:016x}", fastrand::u64(..));
    NatsBackend::connect_with(&url, &prefix, clock)
        .await
        .expect("connect to the test NATS server")
}

pub(crate) async fn reserve(b: &NatsBackend, n: usize) -> Vec<Reserved> {
    let queue = [DEFAULT_QUEUE.to_string()];
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(
            b.reserve(ReserveParams::new(
                &queue,
                n - got.len(),
                Duration::from_secs(5),
            ))
            .await
            .expect("reserve"),
        );
        if got.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got
}

/// Writes task `r`'s end (completed with `result`) as the finish does, and
/// neither settles its node nor acks its message: a crash right after.
async fn end_without_settling(b: &NatsBackend, r: &Reserved, result: &str) {
    let (mut rec, rev) = b
        .inner
        .ledger
        .get(r.lease.id.0)
        .await
        .expect("read")
        .expect("kept");
    rec.apply(Transition::Complete).expect("completes");
    rec.lease_until = None;
    rec.set_result(Some(result.as_bytes().to_vec()));
    rec.finished(b.now(), None);
    b.inner
        .ledger
        .cas_rec(&rec, rev)
        .await
        .expect("write")
        .expect("landed");
}

/// A header's end written and its settle cut short: the node still runs;
/// once its lease runs out, lease recovery meets the finished record,
/// settles it, and the body runs once, with every result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_whose_settle_was_cut_short_is_settled_by_recovery() {
    let clock = Arc::new(ManualClock::default());
    let b = backend(clock.clone()).await;
    let run = async {
        let spec = WorkflowSpec::chord(
            (0..3).map(|i| NewTask::new("echo", format!("[{i}]").into_bytes())),
            NewTask::new("sum", b"[]".to_vec()),
        );
        let id = entries::submit(&b, spec).await.expect("submit").id;
        let headers = reserve(&b, 3).await;
        assert_eq!(headers.len(), 3);
        end_without_settling(&b, &headers[0], "10").await;
        let w = entries::read(&b, id).await.expect("read").expect("there");
        assert_eq!(w.nodes[0].state, NodeState::Running, "not settled yet");
        for r in &headers[1..] {
            let value = format!("{}", 10 + r.lease.id.0 - headers[0].lease.id.0);
            let finish = conveyor_core::Finish::new(
                r.lease.clone(),
                conveyor_core::FinishAction::Complete {
                    result: Some(value.into_bytes()),
                },
            );
            b.finish(vec![finish]).await.expect("finish")[0]
                .as_ref()
                .expect("applied");
        }
        assert!(
            reserve(&b, 1).await.is_empty(),
            "the body waits for header 0"
        );
        clock.advance(Duration::from_secs(6));
        b.recover_expired().await.expect("recover");
        let body = reserve(&b, 1).await;
        assert_eq!(body.len(), 1, "the body runs once header 0 is settled");
        assert_eq!(body[0].payload, b"[[10,11,12]]");
        b.recover_expired().await.expect("recover again");
        let w = entries::read(&b, id).await.expect("read").expect("there");
        assert_eq!(w.nodes[0].state, NodeState::Succeeded);
        assert_eq!(w.state, WorkflowState::Running, "the body runs");
        assert!(reserve(&b, 1).await.is_empty(), "the body fired once");
    };
    run.await;
    b.destroy().await.expect("destroy");
}

/// A settle written with its ready node pending, and the process gone
/// before it created the node's task: maintenance's pass creates it, under
/// the id the settle chose, once; a second pass creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_left_pending_is_created_by_maintenance_once() {
    let clock = Arc::new(ManualClock::default());
    let b = backend(clock.clone()).await;
    let run = async {
        let spec = WorkflowSpec::chain([
            NewTask::new("first", b"[1]".to_vec()),
            NewTask::new("second", b"[]".to_vec()),
        ]);
        let id = entries::submit(&b, spec).await.expect("submit").id;
        let first = reserve(&b, 1).await;
        end_without_settling(&b, &first[0], "5").await;
        // The settle's write, and the process gone before its tasks.
        let rec = b.inner.ledger.get(first[0].lease.id.0).await.expect("read");
        let end = ended(&rec.expect("kept").0).expect("ended");
        entries::settle(&CutShort(&b), vec![end])
            .await
            .expect_err("cut short");
        let w = entries::read(&b, id).await.expect("read").expect("there");
        assert_eq!(w.nodes[1].state, NodeState::Running, "decided");
        assert_eq!(w.nodes[1].task, None, "its task not created yet");
        assert!(reserve(&b, 1).await.is_empty(), "no task yet");
        for _ in 0..2 {
            b.prune(Retention::default()).await.expect("prune");
        }
        let second = reserve(&b, 1).await;
        assert_eq!(second.len(), 1, "created by the pass");
        let w = entries::read(&b, id).await.expect("read").expect("there");
        assert_eq!(
            w.nodes[1].task,
            Some(second[0].lease.id),
            "under the chosen id"
        );
        assert_eq!(second[0].payload, b"[5]");
        assert!(reserve(&b, 1).await.is_empty(), "once");
        let w = entries::read(&b, id).await.expect("read").expect("there");
        assert_eq!(w.nodes[1].state, NodeState::Running);
        let task = b.get(second[0].lease.id).await.expect("get").expect("kept");
        assert_eq!(task.state, TaskState::Running);
    };
    run.await;
    b.destroy().await.expect("destroy");
}

/// A chord of 10,000 headers is submitted, run and fires its body once
/// (the issue's size, on a real server; timings printed, not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chord_of_ten_thousand_fires_once() {
    let clock = Arc::new(ManualClock::default());
    let b = backend(clock.clone()).await;
    let run = async {
        let n = 10_000;
        let spec = WorkflowSpec::chord(
            (0..n).map(|_| NewTask::new("one", b"[]".to_vec())),
            NewTask::new("sum", b"[]".to_vec()),
        );
        let started = std::time::Instant::now();
        let id = entries::submit(&b, spec).await.expect("submit").id;
        eprintln!("submitted {n} in {:?}", started.elapsed());
        let mut ran = 0;
        let mut body = Vec::new();
        while ran < n {
            let got = reserve(&b, 500).await;
            assert!(!got.is_empty(), "headers left to run: {}", n - ran);
            let reports = got
                .iter()
                .map(|r| {
                    conveyor_core::Finish::new(
                        r.lease.clone(),
                        conveyor_core::FinishAction::Complete {
                            result: Some(b"1".to_vec()),
                        },
                    )
                })
                .collect();
            for r in b.finish(reports).await.expect("finish") {
                r.expect("applied");
            }
            for r in got {
                if r.handler == "sum" {
                    body.push(r);
                } else {
                    ran += 1;
                }
            }
        }
        eprintln!("ran {n} in {:?}", started.elapsed());
        body.extend(reserve(&b, 10).await);
        assert_eq!(body.len(), 1, "the body fired once");
        let params: serde_json::Value = serde_json::from_slice(&body[0].payload).expect("JSON");
        assert_eq!(params[0].as_array().map(Vec::len), Some(n));
        let w = entries::read(&b, id).await.expect("read").expect("there");
        assert_eq!(w.state, WorkflowState::Running, "the body runs");
    };
    run.await;
    b.destroy().await.expect("destroy");
}

/// An expanding task's end written and its settle cut short, after a dead
/// process left a stray part of the expansion's document (one the entry
/// never listed): lease recovery meets the end, writes the document anew
/// and expands once, however often it is heard; the added tasks run and
/// the dependent gets their results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expansion_cut_short_is_made_once_by_recovery() {
    let clock = Arc::new(ManualClock::default());
    let b = backend(clock.clone()).await;
    let run = async {
        let spec = WorkflowSpec::chain([
            NewTask::new("list", b"[]".to_vec()),
            NewTask::new("sum", b"[]".to_vec()),
        ]);
        let id = entries::submit(&b, spec).await.expect("submit").id;
        let list = reserve(&b, 1).await;
        let fan_out = r#"{"$expand": {"group": [{"handler": "echo", "params": [1]},
                                               {"handler": "echo", "params": [2]}]}}"#;
        end_without_settling(&b, &list[0], fan_out).await;
        b.inner
            .ledger
            .put(
                &format!("fg.{}.0.0", id.0),
                bytes::Bytes::from_static(b"not a document"),
            )
            .await
            .expect("a stray part");
        clock.advance(Duration::from_secs(6));
        for _ in 0..2 {
            b.recover_expired().await.expect("recover");
        }
        let added = reserve(&b, 2).await;
        assert_eq!(added.len(), 2, "the expansion's tasks, once each");
        assert!(reserve(&b, 1).await.is_empty());
        for r in &added {
            let finish = conveyor_core::Finish::new(
                r.lease.clone(),
                conveyor_core::FinishAction::Complete {
                    result: Some(r.payload[1..r.payload.len() - 1].to_vec()),
                },
            );
            b.finish(vec![finish]).await.expect("finish")[0]
                .as_ref()
                .expect("applied");
        }
        let sum = reserve(&b, 1).await;
        assert_eq!(sum.len(), 1);
        assert_eq!(sum[0].payload, b"[[1,2]]");
        let w = entries::read(&b, id).await.expect("read").expect("there");
        assert_eq!(w.nodes.len(), 4);
        assert_eq!(w.nodes[0].state, NodeState::Succeeded);
    };
    run.await;
    b.destroy().await.expect("destroy");
}
