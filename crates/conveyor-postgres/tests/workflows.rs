//! Workflows on PostgreSQL beyond the conformance cases: the end of a node's
//! task is recorded by the statement that ended it, so a process that dies
//! between ending the task and settling the node loses nothing:
//! maintenance settles it, once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::workflow::{NodeState, WorkflowSpec};
use conveyor_core::{Backend, ManualClock, NewTask, ReserveParams, TaskState, Timestamp};

/// Tasks of `handler` in the schema, whatever their state.
async fn count(
    client: &conveyor_postgres::tokio_postgres::Client,
    schema: &str,
    handler: &str,
) -> i64 {
    client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".tasks WHERE handler = $1"),
            &[&handler],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn an_end_recorded_but_not_settled_is_settled_by_maintenance_once() {
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let scoped = common::Scoped::new(clock.clone()).await;
    let b = &scoped.backend;
    let schema = b.schema().to_string();
    let dyn_b: Arc<dyn Backend> = Arc::new(b.clone());
    let spec = WorkflowSpec::chain([
        NewTask::new("first", b"[1]".to_vec()),
        NewTask::new("second", b"[]".to_vec()),
    ]);
    let id = dyn_b.submit_workflow(spec).await.expect("submit").id;
    let queues = vec!["default".to_string()];
    let got = b
        .reserve(ReserveParams::new(&queues, 10, Duration::from_secs(30)))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    // The task ends as the finish statement ends it (recording the end in
    // the same statement), and the process dies before it settles the
    // node: only the record is left.
    let client = common::client().await;
    client
        .execute(
            &format!(
                "WITH u AS (UPDATE \"{schema}\".tasks SET state = $2, result = '42',
                     lease_until = NULL, finished_at = 1 WHERE id = $1 RETURNING id)
                 INSERT INTO \"{schema}\".workflow_settles (task) SELECT id FROM u"
            ),
            &[
                &i64::try_from(got[0].lease.id.0).expect("id"),
                &(TaskState::Completed.code() as i16),
            ],
        )
        .await
        .expect("end the task by hand");
    assert_eq!(
        count(&client, &schema, "second").await,
        0,
        "not settled yet"
    );
    let pending: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".workflow_settles"),
            &[],
        )
        .await
        .expect("pending")
        .get(0);
    assert_eq!(pending, 1, "the end is recorded");
    for _ in 0..3 {
        dyn_b.recover_expired().await.expect("maintenance");
    }
    assert_eq!(count(&client, &schema, "second").await, 1, "settled once");
    let w = dyn_b.workflow(id).await.expect("read").expect("exists");
    assert_eq!(
        w.node("step-1").expect("step-1").state,
        NodeState::Succeeded
    );
    assert_eq!(w.node("step-2").expect("step-2").state, NodeState::Running);
    let next = b
        .reserve(ReserveParams::new(&queues, 10, Duration::from_secs(30)))
        .await
        .expect("reserve");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].payload, b"[42]", "the chain passed the result on");
}

/// A chord of 10,000 header tasks, finished in batches of 500 by one
/// worker's calls: every end is settled with its finish (none left for
/// maintenance), and the body runs once with all 10,000 results in order.
#[tokio::test]
async fn a_chord_of_ten_thousand_fires_its_body_once() {
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let scoped = common::Scoped::new(clock).await;
    let b = &scoped.backend;
    let dyn_b: Arc<dyn Backend> = Arc::new(b.clone());
    let n = 10_000;
    let header = (0..n).map(|i| NewTask::new("echo", format!("[{i}]").into_bytes()));
    let spec = WorkflowSpec::chord(header, NewTask::new("sum", b"[]".to_vec()));
    let id = dyn_b.submit_workflow(spec).await.expect("submit").id;
    let queues = vec!["default".to_string()];
    let mut bodies = Vec::new();
    loop {
        let got = b
            .reserve(ReserveParams::new(&queues, 500, Duration::from_secs(60)))
            .await
            .expect("reserve");
        if got.is_empty() {
            break;
        }
        let mut reports = Vec::new();
        for r in got {
            if r.handler == "sum" {
                bodies.push(r.payload.clone());
            }
            // `[i]`: the result is `i`.
            let text = String::from_utf8(r.payload.clone()).expect("utf-8");
            let result = text
                .trim_matches(|c| c == '[' || c == ']')
                .as_bytes()
                .to_vec();
            reports.push(conveyor_core::Finish::new(
                r.lease,
                conveyor_core::FinishAction::Complete {
                    result: Some(result),
                },
            ));
        }
        for out in b.finish(reports).await.expect("finish") {
            out.expect("applied");
        }
    }
    assert_eq!(bodies.len(), 1, "the body runs once");
    let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let expected = format!("[[{}]]", expected.join(","));
    assert!(
        bodies[0] == expected.as_bytes(),
        "the body gets every result in order: {}",
        String::from_utf8_lossy(&bodies[0][..200.min(bodies[0].len())])
    );
    let client = common::client().await;
    let left: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".workflow_settles", b.schema()),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "every end settled with its finish");
    let w = dyn_b.workflow(id).await.expect("read").expect("exists");
    assert_eq!(w.state, conveyor_core::workflow::WorkflowState::Succeeded);
}

/// A second process on the same schema keeps a graph that an expansion
/// made by the first leaves stale: it reads the expansion back, settles the
/// added nodes and shows what the first shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expansion_is_seen_from_another_process() {
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let scoped = common::Scoped::new(clock.clone()).await;
    let other = conveyor_postgres::PostgresBackend::connect_with(
        &common::url(),
        scoped.backend.schema(),
        clock,
    )
    .await
    .expect("connect to the test server");
    conveyor_testkit::conformance::an_expansion_is_seen_from_another_handle(
        Arc::new(scoped.backend.clone()),
        Arc::new(other),
    )
    .await;
}
