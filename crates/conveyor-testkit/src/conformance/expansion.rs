//! Dynamic expansion (see `conveyor_core::workflow::expansion_of`): a
//! running node's task adds nodes to its own workflow, which cannot end
//! before they have; an end heard twice adds nothing twice.

use std::sync::Arc;

use conveyor_core::workflow::{ExpansionOutput, NodeState, WorkflowSpec, WorkflowState};
use conveyor_core::{FinishAction, ManualClock};
use serde_json::{json, Value};

use super::workflows::{call, done, finish_at_once, hold, node_state, params, read, ready};
use super::*;

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
    assert_eq!(node_state(&w, "step-1"), NodeState::Running);
    assert_eq!(node_state(&w, "step-2"), NodeState::Waiting);
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
    assert_eq!(node_state(&w, "step-1"), NodeState::Succeeded);
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
    assert_eq!(node_state(&w, "step-1"), NodeState::Failed);
    assert_eq!(node_state(&w, "step-1/body"), NodeState::Skipped);
    assert_eq!(node_state(&w, "step-2"), NodeState::Skipped);
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
    assert_eq!(node_state(&w, "step-1"), NodeState::Succeeded);
}

/// Every header of a chord expands at once (from eight lanes, each end
/// heard twice), each into a group of three, then every added task ends
/// at once: each expansion is made once, and the body runs once with each
/// header's list of results in order.
pub async fn concurrent_expansions_each_happen_once(b: Subject, _clock: Arc<ManualClock>) {
    let n = 16;
    let header = (0..n).map(|i| call("split", json!([i])));
    let spec = WorkflowSpec::chord(header, call("add", json!([])));
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let splits = hold(&b, n).await;
    assert_eq!(splits.len(), n, "every header is ready at once");
    finish_at_once(&b, splits, |r| {
        let i = params(r)[0].as_i64().expect("a number");
        let group: Vec<Value> = (0..3)
            .map(|k| json!({"handler": "echo", "params": [i * 10 + k]}))
            .collect();
        done(json!({"$expand": {"group": group}}))
    })
    .await;
    let echoes = hold(&b, 3 * n).await;
    assert_eq!(echoes.len(), 3 * n, "each expansion's tasks, once each");
    finish_at_once(&b, echoes, |r| done(params(r)[0].clone())).await;
    let body = hold(&b, 1).await;
    assert_eq!(body.len(), 1, "the body runs once");
    let expected: Vec<Value> = (0..n as i64)
        .map(|i| json!([i * 10, i * 10 + 1, i * 10 + 2]))
        .collect();
    assert_eq!(params(&body[0]), json!([expected]));
    report(&b, body[0].lease.clone(), done(json!(0)))
        .await
        .expect("report");
    let w = read(&b, id).await;
    assert_eq!(w.nodes.len(), n + 1 + 3 * n);
    assert_eq!(w.state, WorkflowState::Succeeded);
    assert!(ready(&b).await.is_empty());
}

/// Two handles on one store (two processes, each keeping graphs it read):
/// `other` reads the workflow before `b` expands a node of it, then
/// settles the added nodes and shows the workflow with the graph it kept
/// gone stale. Each handle reads the expansion back from the store: the
/// added nodes settle, the dependent gets their results, both show the
/// same nodes.
pub async fn an_expansion_is_seen_from_another_handle(b: Subject, other: Subject) {
    let spec = WorkflowSpec::chain([call("list", json!([])), call("sum", json!([]))]);
    let id = b.submit_workflow(spec).await.expect("submit").id;
    assert_eq!(
        read(&other, id).await.nodes.len(),
        2,
        "other keeps the graph"
    );
    let list = ready(&b).await.pop().expect("list runs");
    let group: Vec<Value> = (1..=3)
        .map(|i| json!({"handler": "echo", "params": [i]}))
        .collect();
    report(
        &b,
        list.lease.clone(),
        done(json!({"$expand": {"group": group}})),
    )
    .await
    .expect("report");
    let echoes = hold(&other, 3).await;
    assert_eq!(echoes.len(), 3);
    for r in echoes {
        report(&other, r.lease.clone(), done(params(&r)[0].clone()))
            .await
            .expect("the other handle settles an added node");
    }
    let seen = read(&other, id).await;
    assert_eq!(seen.nodes.len(), 5, "{:?}", seen.nodes);
    assert_eq!(node_state(&seen, "step-1"), NodeState::Succeeded);
    let sum = hold(&b, 1).await;
    assert_eq!(sum.len(), 1);
    assert_eq!(params(&sum[0]), json!([[1, 2, 3]]));
    report(&b, sum[0].lease.clone(), done(json!(6)))
        .await
        .expect("report");
    let (mine, theirs) = (read(&b, id).await, read(&other, id).await);
    assert_eq!(mine, theirs);
    assert_eq!(mine.state, WorkflowState::Succeeded);
}
