//! Dynamic expansion (see `conveyor_core::workflow::expansion_of`): a
//! running node's task adds nodes to its own workflow, which cannot end
//! before they have; an end heard twice adds nothing twice.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::workflow::{
    ExpansionOutput, NodeState, WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowState,
};
use conveyor_core::{FinishAction, ManualClock, NewTask, Reserved};
use serde_json::{json, Value};

use super::*;

fn call(handler: &str, params: Value) -> NewTask {
    NewTask::new(handler, params.to_string().into_bytes()).max_attempts(1)
}

fn params(r: &Reserved) -> Value {
    serde_json::from_slice(&r.payload).expect("node params are JSON")
}

async fn read(b: &Subject, id: WorkflowId) -> WorkflowRecord {
    b.workflow(id).await.expect("workflow").expect("present")
}

fn state(w: &WorkflowRecord, name: &str) -> NodeState {
    w.node(name)
        .unwrap_or_else(|| panic!("no node {name} in {:?}", w.nodes))
        .state
}

async fn ready(b: &Subject) -> Vec<Reserved> {
    for _ in 0..3 {
        let got = reserve(b, 100).await;
        if !got.is_empty() {
            return got;
        }
        b.wait_for_work(&default_queue(), Duration::from_millis(50))
            .await;
    }
    Vec::new()
}

fn done(value: Value) -> FinishAction {
    FinishAction::Complete {
        result: Some(value.to_string().into_bytes()),
    }
}

/// `list` fans out over three items (the expansion's `fetch` tasks), each
/// doubled; `sum`, after `list`, gets the list of their results and runs
/// only once every `fetch` has. The expanding task's end, heard again,
/// adds nothing; `show` lists the added nodes after the declared ones.
pub async fn a_running_node_expands_its_workflow(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::chain([call("list", json!([])), call("sum", json!([]))]);
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let list = ready(&b).await.pop().expect("list runs");
    let fan_out = json!({"$expand": {"group": [
        {"handler": "fetch", "params": [1]},
        {"handler": "fetch", "params": [2]},
        {"handler": "fetch", "params": [3]},
    ]}});
    report(&b, list.lease.clone(), done(fan_out.clone()))
        .await
        .expect("report");
    // The same end again (a zombie's report): refused or ignored, and
    // nothing is added twice.
    let _ = report(&b, list.lease.clone(), done(fan_out)).await;
    let w = read(&b, id).await;
    let names: Vec<&str> = w.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "step-1",
            "step-2",
            "step-1/task-1",
            "step-1/task-2",
            "step-1/task-3"
        ]
    );
    let (output, last) = w.nodes[0].expanded.clone().expect("step-1 expanded");
    assert_eq!(output, ExpansionOutput::List);
    assert_eq!(last, ["step-1/task-1", "step-1/task-2", "step-1/task-3"]);
    assert_eq!(state(&w, "step-1"), NodeState::Running);
    assert_eq!(state(&w, "step-2"), NodeState::Waiting);
    let mut fetches = ready(&b).await;
    assert_eq!(fetches.len(), 3, "the three fetches run, once each");
    fetches.sort_by_key(|r| params(r)[0].as_i64());
    let last = fetches.pop().expect("three");
    for r in fetches {
        let n = params(&r)[0].as_i64().expect("a number");
        report(&b, r.lease.clone(), done(json!(n * 2)))
            .await
            .expect("report");
    }
    assert!(ready(&b).await.is_empty(), "sum waits for every fetch");
    assert_eq!(read(&b, id).await.state, WorkflowState::Running);
    report(&b, last.lease.clone(), done(json!(6)))
        .await
        .expect("report");
    let sum = ready(&b).await;
    assert_eq!(sum.len(), 1);
    assert_eq!(sum[0].handler, "sum");
    assert_eq!(params(&sum[0]), json!([[2, 4, 6]]));
    report(&b, sum[0].lease.clone(), done(json!(12)))
        .await
        .expect("report");
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Succeeded);
    assert_eq!(state(&w, "step-1"), NodeState::Succeeded);
    assert!(ready(&b).await.is_empty());
}

/// A failure inside an expansion fails the expanded node and skips its
/// dependents; retrying the workflow reruns the failed task alone, and the
/// node then settles with its expansion.
pub async fn a_failed_expansion_fails_its_node_and_retries(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::chain([call("list", json!([])), call("sum", json!([]))]);
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let list = ready(&b).await.pop().expect("list runs");
    let chord = json!({"$expand": {"chord": {
        "header": [{"handler": "fetch", "params": [1]}, {"handler": "flaky", "params": [2]}],
        "body": {"handler": "total"}}}});
    report(&b, list.lease.clone(), done(chord))
        .await
        .expect("report");
    let mut failed_once = false;
    for _ in 0..2 {
        for r in ready(&b).await {
            let action = match r.handler.as_str() {
                "flaky" if !failed_once => {
                    failed_once = true;
                    FinishAction::DeadLetter {
                        error: "flaky".into(),
                    }
                }
                "total" => {
                    let sum: i64 = params(&r)[0]
                        .as_array()
                        .expect("the header's results")
                        .iter()
                        .filter_map(Value::as_i64)
                        .sum();
                    done(json!(sum))
                }
                _ => done(params(&r)[0].clone()),
            };
            report(&b, r.lease.clone(), action).await.expect("report");
        }
    }
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Failed);
    assert_eq!(state(&w, "step-1"), NodeState::Failed);
    assert_eq!(state(&w, "step-1/body"), NodeState::Skipped);
    assert_eq!(state(&w, "step-2"), NodeState::Skipped);
    b.retry_workflow(id).await.expect("retry").expect("present");
    let mut ran = Vec::new();
    loop {
        let got = ready(&b).await;
        if got.is_empty() {
            break;
        }
        for r in got {
            ran.push((r.handler.clone(), params(&r)));
            let action = match r.handler.as_str() {
                "total" | "sum" => {
                    let v = &params(&r)[0];
                    let sum: i64 = match v {
                        Value::Array(items) => items.iter().filter_map(Value::as_i64).sum(),
                        other => other.as_i64().unwrap_or(0),
                    };
                    done(json!(sum))
                }
                _ => done(params(&r)[0].clone()),
            };
            report(&b, r.lease.clone(), action).await.expect("report");
        }
    }
    assert_eq!(
        ran,
        vec![
            ("flaky".to_string(), json!([2])),
            ("total".to_string(), json!([[1, 2]])),
            ("sum".to_string(), json!([3])),
        ]
    );
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Succeeded);
    assert_eq!(state(&w, "step-1"), NodeState::Succeeded);
}
