//! RabbitMQ's own forms of the workflow cases the conformance suite cannot
//! run here (`conformance_results.rs` runs the rest): a broker's lease is
//! its channel, so a worker that dies is a connection that closes, and its
//! deliveries come back to another worker.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_amqp::AmqpOptions;
use conveyor_core::workflow::{NodeState, WorkflowRecord, WorkflowSpec, WorkflowState};
use conveyor_core::{
    Backend, Error, Finish, FinishAction, NewTask, Reserved, Retention, TaskState, Timestamp,
};
use serde_json::{json, Value};

fn call(handler: &str, params: Value) -> NewTask {
    NewTask::new(handler, params.to_string().into_bytes())
}

fn params(r: &Reserved) -> Value {
    serde_json::from_slice(&r.payload).expect("JSON params")
}

/// Submits a chord of `n` `echo` headers (header `i` gets `[i]`) and an
/// `add` body on `b`.
async fn submit_chord(b: &dyn Backend, n: i64) -> conveyor_core::workflow::WorkflowId {
    let header = (0..n).map(|i| call("echo", json!([i])));
    let spec = WorkflowSpec::chord(header, call("add", json!([])));
    let flows = b.workflows().expect("part");
    flows.submit(spec).await.expect("submit").id
}

/// Workflow `id`, which must exist.
async fn read(b: &dyn Backend, id: conveyor_core::workflow::WorkflowId) -> WorkflowRecord {
    let flows = b.workflows().expect("part");
    flows.workflow(id).await.expect("read").expect("there")
}

async fn complete(b: &dyn Backend, r: &Reserved, result: Value) {
    let finish = Finish::new(
        r.lease.clone(),
        FinishAction::Complete {
            result: Some(result.to_string().into_bytes()),
        },
    );
    b.finish(vec![finish]).await.expect("finish")[0]
        .as_ref()
        .expect("applied");
}

/// Without a store beside the broker there is nowhere to keep a workflow:
/// the part is refused, saying what to add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_need_a_store_beside_the_broker() {
    let b = common::backend(AmqpOptions::default()).await;
    let Err(e) = b.workflows() else {
        panic!("workflows without a store beside the broker");
    };
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("results="), "{e}");
    common::cleanup(&b, &[conveyor_core::DEFAULT_QUEUE]).await;
}

/// Schedules are absent even with a store beside the broker, and the
/// refusal says why and where to keep them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_absent_with_their_reason() {
    let b = common::backend_keeping(AmqpOptions::default()).await;
    let Err(e) = b.schedules() else {
        panic!("schedules on RabbitMQ");
    };
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("unique keys"), "{e}");
    assert!(!b.parts().contains(&conveyor_core::Part::Schedules));
    common::cleanup(&b, &[conveyor_core::DEFAULT_QUEUE]).await;
}

/// A header's worker dies after its report's record is written and before
/// its commit (as a report writes it: the record first): its delivery
/// comes back to another worker, whose reservation meets the ended record,
/// settles the node from it and acks the delivery rather than run the
/// header again. The body runs once, with every header's result in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_cut_short_before_its_commit_is_settled_by_the_next_reservation() {
    let a = common::backend_keeping(AmqpOptions::default()).await;
    let other = common::peer(&a).await;
    let run = async {
        let id = submit_chord(&a, 3).await;
        let held = common::reserve_n(&a, 3, Duration::from_secs(10)).await;
        assert_eq!(held.len(), 3);
        let (cut, rest): (Vec<_>, Vec<_>) = held.into_iter().partition(|r| params(r)[0] == 2);
        for r in &rest {
            complete(&a, r, params(r)[0].clone()).await;
        }
        // The cut-short report's record, as written before its commit.
        let results = a.result_store().expect("results");
        let mut record = results
            .get(cut[0].lease.id)
            .await
            .expect("read")
            .expect("kept");
        record.state = TaskState::Completed;
        record.result = Some(b"2".to_vec());
        record.finished_at = Some(Timestamp::now());
        a.keeper()
            .expect("keeper")
            .record_keeper()
            .expect("part")
            .keep(&[record], Retention::default())
            .await
            .expect("keep");
        a.close().await;
        let got = common::reserve_n(&other, 1, Duration::from_secs(15)).await;
        assert_eq!(got.len(), 1, "the body");
        assert_eq!(got[0].handler, "add", "the header did not run again");
        assert_eq!(params(&got[0]), json!([[0, 1, 2]]));
        assert!(common::nothing_for(&other, Duration::from_millis(1500)).await);
        complete(&other, &got[0], json!(3)).await;
        let w = read(&other, id).await;
        assert_eq!(w.state, WorkflowState::Succeeded);
        assert!(w.nodes.iter().all(|n| n.state == NodeState::Succeeded));
    };
    run.await;
    common::cleanup(&other, &[conveyor_core::DEFAULT_QUEUE]).await;
}

/// Two workers run a chord of 200 headers at once, each report sent from
/// one of them, and one of them dies (its connection closes) with
/// deliveries in hand: they come back to the other; the body runs once,
/// with every result in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chord_outlives_a_worker_that_dies_mid_run() {
    let a = common::backend_keeping(AmqpOptions::default()).await;
    let b = Arc::new(common::peer(&a).await);
    let run = async {
        let n = 200;
        let id = submit_chord(&a, n).await;
        // `a` takes some, finishes half of them, and dies with the rest.
        let taken = common::reserve_n(&a, 40, Duration::from_secs(10)).await;
        for r in taken.iter().take(taken.len() / 2) {
            complete(&a, r, params(r)[0].clone()).await;
        }
        a.close().await;
        let mut bodies = Vec::new();
        let mut ran = 0;
        while bodies.is_empty() {
            let got = common::reserve_n(&b, 50, Duration::from_secs(10)).await;
            assert!(!got.is_empty(), "headers left, none delivered ({ran} ran)");
            for r in got {
                if r.handler == "add" {
                    bodies.push(params(&r));
                    complete(&*b, &r, json!(0)).await;
                } else {
                    ran += 1;
                    complete(&*b, &r, params(&r)[0].clone()).await;
                }
            }
        }
        assert!(common::nothing_for(&b, Duration::from_millis(1500)).await);
        let expected: Vec<i64> = (0..n).collect();
        assert_eq!(bodies, vec![json!([expected])], "the body ran once");
        let w = read(&*b, id).await;
        assert_eq!(w.state, WorkflowState::Succeeded);
    };
    run.await;
    common::cleanup(&b, &[conveyor_core::DEFAULT_QUEUE]).await;
}

/// Ended workflows go with their retention (a succeeded one after the
/// finished tasks', a failed one after the dead tasks'), their tasks'
/// records with them; a running one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_workflows_go_with_their_retention() {
    let b = common::backend_keeping(AmqpOptions::default()).await;
    let run = async {
        let flows = b.workflows().expect("part");
        let good = flows
            .submit(WorkflowSpec::chain([call("one", json!([1]))]))
            .await
            .expect("submit");
        let bad = flows
            .submit(WorkflowSpec::chain([call("two", json!([2]))]))
            .await
            .expect("submit");
        let running = flows
            .submit(WorkflowSpec::chain([call("three", json!([3]))]))
            .await
            .expect("submit");
        let held = common::reserve_n(&b, 3, Duration::from_secs(10)).await;
        for r in &held {
            match r.handler.as_str() {
                "one" => complete(&b, r, json!(1)).await,
                "two" => {
                    let dead = Finish::new(
                        r.lease.clone(),
                        FinishAction::DeadLetter { error: "no".into() },
                    );
                    b.finish(vec![dead]).await.expect("finish")[0]
                        .as_ref()
                        .expect("applied");
                }
                _ => {}
            }
        }
        let keep_all = Retention {
            finished: Duration::from_secs(3600),
            dead: Duration::from_secs(3600),
        };
        assert_eq!(b.prune_workflows(keep_all).await.expect("prune"), 0);
        let succeeded_only = Retention {
            finished: Duration::ZERO,
            dead: Duration::from_secs(3600),
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(b.prune_workflows(succeeded_only).await.expect("prune"), 1);
        assert!(flows.workflow(good.id).await.expect("read").is_none());
        let task = good.started[0].1;
        assert!(
            b.result_store()
                .expect("results")
                .get(task)
                .await
                .expect("get")
                .is_none(),
            "its task's record went with it"
        );
        assert!(flows.workflow(bad.id).await.expect("read").is_some());
        let none = Retention {
            finished: Duration::ZERO,
            dead: Duration::ZERO,
        };
        assert_eq!(b.prune_workflows(none).await.expect("prune"), 1);
        assert!(flows.workflow(bad.id).await.expect("read").is_none());
        let still = flows
            .workflow(running.id)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(still.state, WorkflowState::Running);
    };
    run.await;
    common::cleanup(&b, &[conveyor_core::DEFAULT_QUEUE]).await;
}
