//! Workflows on PostgreSQL beyond the conformance cases: the end of a node's
//! task is recorded by a trigger in whatever transaction ended it, so a
//! process that dies between ending the task and settling the node (or a
//! task ended by hand) loses nothing: maintenance settles it, once.

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
    // The task ends as the finish statement would end it, and the process
    // dies before it settles the node: only the trigger's record is left.
    let client = common::client().await;
    client
        .execute(
            &format!(
                "UPDATE \"{schema}\".tasks SET state = $2, result = '42', lease_until = NULL,
                 finished_at = 1 WHERE id = $1"
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

#[tokio::test]
async fn cancelling_a_node_task_settles_its_node() {
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let scoped = common::Scoped::new(clock).await;
    let b: Arc<dyn Backend> = Arc::new(scoped.backend.clone());
    let spec = WorkflowSpec::chain([
        NewTask::new("first", b"[1]".to_vec()),
        NewTask::new("second", b"[]".to_vec()),
    ]);
    let sub = b.submit_workflow(spec).await.expect("submit");
    let task = sub.started[0].1;
    assert_eq!(b.cancel(task).await.expect("cancel"), TaskState::Cancelled);
    let w = b.workflow(sub.id).await.expect("read").expect("exists");
    assert_eq!(
        w.node("step-1").expect("step-1").state,
        NodeState::Cancelled
    );
    assert_eq!(w.node("step-2").expect("step-2").state, NodeState::Skipped);
    assert_eq!(w.state, conveyor_core::workflow::WorkflowState::Failed);
}
