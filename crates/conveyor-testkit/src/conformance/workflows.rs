//! Workflows (the [`Workflows`](conveyor_core::Workflows) part): graphs of
//! tasks moved forward by their tasks' finishes, each node fired exactly
//! once whatever finishes twice, late or not at all.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::workflow::{
    Dependency, EdgePolicy, NodeInput, NodeSpec, NodeState, Retried, WhenEnded, WorkflowFilter,
    WorkflowId, WorkflowRecord, WorkflowSpec, WorkflowState,
};
use conveyor_core::{Error, FinishAction, ManualClock, NewTask, Reserved, Retention, TaskState};
use serde_json::{json, Value};

use super::*;

/// A task of handler `handler` with JSON `params`.
pub(super) fn call(handler: &str, params: Value) -> NewTask {
    NewTask::new(handler, params.to_string().into_bytes()).max_attempts(3)
}

/// The params of a reserved task, as JSON.
pub(super) fn params(r: &Reserved) -> Value {
    serde_json::from_slice(&r.payload).expect("node params are JSON")
}

/// The workflow `id`, which must exist.
pub(super) async fn read(b: &Subject, id: WorkflowId) -> WorkflowRecord {
    b.workflow(id)
        .await
        .expect("workflow")
        .unwrap_or_else(|| panic!("workflow {id} is missing"))
}

/// The state of node `name`.
pub(super) fn node_state(w: &WorkflowRecord, name: &str) -> NodeState {
    w.node(name)
        .unwrap_or_else(|| panic!("no node {name}"))
        .state
}

/// Reserves every ready task, a few tries for a broker's push.
pub(super) async fn ready(b: &Subject) -> Vec<Reserved> {
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

/// Runs every task that becomes ready, deciding each one's end with
/// `decide`, until none is left; returns every task run, in order.
async fn drain(
    b: &Subject,
    mut decide: impl FnMut(&Reserved) -> FinishAction,
) -> Vec<(String, Value)> {
    let mut ran = Vec::new();
    loop {
        let got = ready(b).await;
        if got.is_empty() {
            return ran;
        }
        for r in got {
            ran.push((r.handler.clone(), params(&r)));
            let action = decide(&r);
            report(b, r.lease.clone(), action)
                .await
                .expect("the report applies");
        }
    }
}

/// Reports every one of `held` from eight lanes at once, each report made
/// twice (the second refused as stale), ending each as `action` says.
pub(super) async fn finish_at_once(
    b: &Subject,
    held: Vec<Reserved>,
    action: impl Fn(&Reserved) -> FinishAction + Send + Sync + 'static,
) {
    let action = Arc::new(action);
    let mut lanes: Vec<Vec<Reserved>> = (0..8).map(|_| Vec::new()).collect();
    for (i, r) in held.into_iter().enumerate() {
        lanes[i % 8].push(r);
    }
    let joins: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let (b, action) = (b.clone(), action.clone());
            tokio::spawn(async move {
                for r in lane {
                    let end = action(&r);
                    report(&b, r.lease.clone(), end.clone())
                        .await
                        .expect("the first finish applies");
                    let again = report(&b, r.lease.clone(), end).await;
                    assert!(again.is_err(), "a repeated finish is refused as stale");
                }
            })
        })
        .collect();
    for j in joins {
        j.await.expect("a finishing lane");
    }
}

/// Reserves until `n` tasks are held (a few tries for a broker's push).
pub(super) async fn hold(b: &Subject, n: usize) -> Vec<Reserved> {
    let mut held = Vec::new();
    for _ in 0..40 {
        held.extend(ready(b).await);
        if held.len() >= n {
            break;
        }
    }
    held
}

/// Completes with `value` as the JSON result.
pub(super) fn done(value: Value) -> FinishAction {
    FinishAction::Complete {
        result: Some(value.to_string().into_bytes()),
    }
}

/// `add`: the sum of its params (a list of numbers, or of lists of them).
fn add(r: &Reserved) -> FinishAction {
    fn sum(v: &Value) -> i64 {
        match v {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::Array(items) => items.iter().map(sum).sum(),
            _ => 0,
        }
    }
    done(json!(sum(&params(r))))
}

/// Runs a chord's tasks (`echo` answers its first argument, `add` is the
/// body) until none is left; returns the params of every body run.
async fn run_chord(b: &Subject) -> Vec<Value> {
    let ran = drain(b, |r| match r.handler.as_str() {
        "echo" => done(params(r)[0].clone()),
        _ => add(r),
    })
    .await;
    ran.into_iter()
        .filter(|(h, _)| h == "add")
        .map(|(_, p)| p)
        .collect()
}

/// A chain hands each step the previous result as its first argument, one
/// step at a time; the workflow succeeds when the last step does.
pub async fn a_chain_passes_each_result_to_the_next(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::chain([
        call("add", json!([1, 2])),
        call("add", json!([10])),
        call("add", json!([100])),
    ]);
    let submitted = b.submit_workflow(spec).await.expect("submit");
    assert_eq!(submitted.started.len(), 1);
    assert_eq!(submitted.started[0].0, "step-1");
    let w = read(&b, submitted.id).await;
    assert_eq!(w.state, WorkflowState::Running);
    assert_eq!(node_state(&w, "step-2"), NodeState::Waiting);
    assert_eq!(w.node("step-2").expect("present").task, None);
    let ran = drain(&b, add).await;
    let got: Vec<Value> = ran.into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, vec![json!([1, 2]), json!([3, 10]), json!([13, 100])]);
    let w = read(&b, submitted.id).await;
    assert_eq!(w.state, WorkflowState::Succeeded);
    assert!(w.ended_at.is_some());
    let last = w
        .node("step-3")
        .expect("present")
        .task
        .expect("the last step's task");
    assert_eq!(get(&b, last).await.result, Some(b"113".to_vec()));
}

/// A chord's body runs once, after every header task, with their results in
/// the header's order whatever order they finished in.
pub async fn a_chord_body_gets_the_header_results_in_order(b: Subject, _clock: Arc<ManualClock>) {
    let header = (0..5).map(|i| call("echo", json!([i])));
    let spec = WorkflowSpec::chord(header, call("add", json!([])));
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let mut headers = ready(&b).await;
    assert_eq!(headers.len(), 5);
    headers.reverse();
    for (n, r) in headers.into_iter().enumerate() {
        let i = params(&r)[0].clone();
        report(
            &b,
            r.lease.clone(),
            done(json!(i.as_i64().expect("present") * 10)),
        )
        .await
        .expect("report");
        let body_ran = ready(&b).await;
        if n < 4 {
            assert!(body_ran.is_empty(), "the body waits for every header");
        } else {
            assert_eq!(body_ran.len(), 1);
            assert_eq!(params(&body_ran[0]), json!([[0, 10, 20, 30, 40]]));
            report(&b, body_ran[0].lease.clone(), add(&body_ran[0]))
                .await
                .expect("report");
        }
    }
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Succeeded);
    assert!(ready(&b).await.is_empty());
}

/// Under `fail` (the default) a failed node skips its dependents and the
/// workflow fails: the failure callback runs, the success callback does not.
pub async fn a_failed_dependency_skips_its_dependents(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::chain([call("boom", json!([])), call("add", json!([1]))])
        .on(
            WhenEnded::Success,
            NodeSpec::new("cheer", call("cheer", json!([]))),
        )
        .on(
            WhenEnded::Failure,
            NodeSpec::new("alarm", call("alarm", json!([]))),
        )
        .on(
            WhenEnded::Complete,
            NodeSpec::new("tidy", call("tidy", json!([]))),
        );
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let ran = drain(&b, |r| match r.handler.as_str() {
        "boom" => FinishAction::DeadLetter {
            error: "boom".into(),
        },
        _ => done(json!(null)),
    })
    .await;
    let mut handlers: Vec<&str> = ran.iter().map(|(h, _)| h.as_str()).collect();
    handlers.sort();
    assert_eq!(handlers, vec!["alarm", "boom", "tidy"]);
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Failed);
    assert_eq!(node_state(&w, "step-1"), NodeState::Failed);
    assert_eq!(node_state(&w, "step-2"), NodeState::Skipped);
    assert_eq!(node_state(&w, "cheer"), NodeState::Skipped);
    assert_eq!(node_state(&w, "alarm"), NodeState::Succeeded);
}

/// A diamond whose top fails: the side waiting under `ignore` runs with the
/// failure marked in its input and takes the failure in; the side under
/// `continue` runs too, but the workflow still fails; the bottom runs once
/// both sides settled.
pub async fn ignore_and_continue_run_after_a_failure(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec {
        nodes: vec![
            NodeSpec::new("top", call("boom", json!([]))),
            NodeSpec::new("handled", call("echo", json!([])))
                .after(Dependency::on("top").with_policy(EdgePolicy::Ignore))
                .with_input(NodeInput::Previous),
            NodeSpec::new("onward", call("echo", json!([])))
                .after(Dependency::on("top").with_policy(EdgePolicy::Continue)),
            NodeSpec::new("bottom", call("add", json!([])))
                .after(Dependency::on("handled"))
                .after(Dependency::on("onward"))
                .with_input(NodeInput::Results),
        ],
        callbacks: Vec::new(),
    };
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let ran = drain(&b, |r| match r.handler.as_str() {
        "boom" => FinishAction::DeadLetter {
            error: "went wrong".into(),
        },
        "echo" => done(json!(1)),
        _ => add(r),
    })
    .await;
    assert_eq!(ran.len(), 4, "{ran:?}");
    let handled = ran
        .iter()
        .find(|(h, p)| h == "echo" && p != &json!([]))
        .expect("the ignoring side ran with the failure as its input");
    assert_eq!(handled.1[0]["$failed"]["state"], json!("failed"));
    assert_eq!(handled.1[0]["$failed"]["error"], json!("went wrong"));
    assert_eq!(
        ran.last().expect("present"),
        &("add".to_string(), json!([[1, 1]]))
    );
    let w = read(&b, id).await;
    assert_eq!(node_state(&w, "bottom"), NodeState::Succeeded);
    assert_eq!(
        w.state,
        WorkflowState::Failed,
        "the continue edge does not take the failure in"
    );
}

/// An empty group ends as it is submitted, and its callbacks run.
pub async fn an_empty_group_ends_at_once(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::group(Vec::new()).on(
        WhenEnded::Success,
        NodeSpec::new("after", call("after", json!([]))),
    );
    let submitted = b.submit_workflow(spec).await.expect("submit");
    assert_eq!(submitted.started.len(), 1, "the callback started");
    let ran = drain(&b, |_| done(json!(null))).await;
    assert_eq!(ran.len(), 1);
    assert_eq!(read(&b, submitted.id).await.state, WorkflowState::Succeeded);
    let bare = b
        .submit_workflow(WorkflowSpec::default())
        .await
        .expect("submit");
    let w = read(&b, bare.id).await;
    assert_eq!(w.state, WorkflowState::Succeeded);
    assert!(w.nodes.is_empty());
}

/// A header task whose worker went silent is redelivered; the silent
/// worker's late finish is refused and fires nothing, a header that fails
/// once and succeeds on its retry counts once (Celery's #1401), and the body
/// runs exactly once with every header's result.
pub async fn a_zombie_finish_or_a_retry_fires_the_body_once(b: Subject, clock: Arc<ManualClock>) {
    let header = (0..3).map(|i| call("echo", json!([i])));
    let spec = WorkflowSpec::chord(header, call("add", json!([])));
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let first = ready(&b).await;
    assert_eq!(first.len(), 3);
    let value = |r: &Reserved| params(r)[0].as_i64().expect("present");
    // Header 0 fails once: it comes back as a retry.
    let (zombie, rest): (Vec<_>, Vec<_>) = first.into_iter().partition(|r| value(r) == 1);
    for r in &rest {
        if value(r) == 0 {
            report(
                &b,
                r.lease.clone(),
                FinishAction::Retry {
                    delay: Duration::ZERO,
                    error: "flaky".into(),
                },
            )
            .await
            .expect("retry");
        } else {
            report(&b, r.lease.clone(), done(json!(value(r))))
                .await
                .expect("complete");
        }
    }
    // Header 1's worker goes silent past its lease; the task is recovered
    // and handed out again.
    clock.advance(LEASE + Duration::from_secs(1));
    b.recover_expired().await.expect("recover");
    let bodies = run_chord(&b).await;
    assert_eq!(bodies, vec![json!([[0, 1, 2]])], "the body ran once");
    // The silent worker wakes and reports: refused, nothing fires.
    let late = report(&b, zombie[0].lease.clone(), done(json!(99))).await;
    assert!(late.is_err(), "a stale finish is refused");
    assert!(ready(&b).await.is_empty(), "nothing fired again");
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Succeeded);
}

/// Cancelling a workflow cancels its running nodes' tasks and every node
/// left; nothing runs after, callbacks included. Cancelling it again
/// cancels nothing; an unknown workflow is `None`.
pub async fn cancelling_a_workflow_stops_it(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::chain([call("add", json!([1])), call("add", json!([2]))]).on(
        WhenEnded::Failure,
        NodeSpec::new("alarm", call("alarm", json!([]))),
    );
    let submitted = b.submit_workflow(spec).await.expect("submit");
    let running = ready(&b).await;
    assert_eq!(running.len(), 1);
    assert_eq!(
        b.cancel_workflow(submitted.id).await.expect("cancel"),
        Some(3)
    );
    let task = submitted.started[0].1;
    assert_eq!(state(&b, task).await, TaskState::Cancelled);
    let late = report(&b, running[0].lease.clone(), done(json!(1))).await;
    assert!(late.is_err(), "the cancelled task's finish is refused");
    assert!(ready(&b).await.is_empty(), "nothing runs after a cancel");
    let w = read(&b, submitted.id).await;
    assert_eq!(w.state, WorkflowState::Cancelled);
    assert!(w.nodes.iter().all(|n| n.state == NodeState::Cancelled));
    assert_eq!(
        b.cancel_workflow(submitted.id).await.expect("again"),
        Some(0)
    );
    assert_eq!(
        b.cancel_workflow(WorkflowId(u64::MAX))
            .await
            .expect("unknown"),
        None
    );
    assert!(b
        .workflow(WorkflowId(u64::MAX))
        .await
        .expect("read")
        .is_none());
}

/// A declaration that could not run is refused whole, enqueueing nothing: a
/// cycle, and a node with a unique key (a node is its own task).
pub async fn bad_workflows_are_refused_whole(b: Subject, _clock: Arc<ManualClock>) {
    let cycle = WorkflowSpec {
        nodes: vec![
            NodeSpec::new("a", call("a", json!([]))).after(Dependency::on("b")),
            NodeSpec::new("b", call("b", json!([]))).after(Dependency::on("a")),
            NodeSpec::new("free", call("free", json!([]))),
        ],
        callbacks: Vec::new(),
    };
    let e = b.submit_workflow(cycle).await.expect_err("a cycle");
    assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    let keyed = WorkflowSpec::group([
        call("free", json!([])),
        call("keyed", json!([])).unique_key("k"),
    ]);
    let e = b.submit_workflow(keyed).await.expect_err("a unique key");
    assert!(e.to_string().contains("unique key"), "{e}");
    assert!(ready(&b).await.is_empty(), "nothing was enqueued");
}

/// A chord of 1,000 header tasks: the body runs once, with 1,000 results.
pub async fn a_wide_chord_fires_once(b: Subject, _clock: Arc<ManualClock>) {
    let n = 1_000;
    let header = (0..n).map(|i| call("echo", json!([i])));
    let id = b
        .submit_workflow(WorkflowSpec::chord(header, call("add", json!([]))))
        .await
        .expect("submit")
        .id;
    let bodies = run_chord(&b).await;
    assert_eq!(bodies.len(), 1);
    let expected: Vec<i64> = (0..n).collect();
    assert_eq!(bodies[0], json!([expected]));
    assert_eq!(read(&b, id).await.state, WorkflowState::Succeeded);
}

/// A chord's headers finished by many workers at once, each finish heard
/// twice (the second refused as stale): the body runs once, with every
/// header's result in order. Two settles of one workflow racing must
/// neither lose a count nor fire the body twice.
pub async fn concurrent_finishes_fire_the_body_once(b: Subject, _clock: Arc<ManualClock>) {
    let n = 64;
    let header = (0..n).map(|i| call("echo", json!([i])));
    let id = b
        .submit_workflow(WorkflowSpec::chord(header, call("add", json!([]))))
        .await
        .expect("submit")
        .id;
    let held = hold(&b, n).await;
    assert_eq!(held.len(), n, "every header is ready at once");
    finish_at_once(&b, held, |r| done(params(r)[0].clone())).await;
    let bodies: Vec<Value> = drain(&b, add)
        .await
        .into_iter()
        .filter(|(h, _)| h == "add")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(bodies.len(), 1, "the body runs once: {bodies:?}");
    let expected: Vec<i64> = (0..n as i64).collect();
    assert_eq!(bodies[0], json!([expected]));
    assert_eq!(read(&b, id).await.state, WorkflowState::Succeeded);
}

/// Cancelling a node's task (not the workflow) settles its node as
/// cancelled: its dependents under `fail` are skipped and the workflow
/// fails.
pub async fn cancelling_a_node_task_settles_its_node(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::chain([call("first", json!([1])), call("second", json!([]))]);
    let sub = b.submit_workflow(spec).await.expect("submit");
    let task = sub.started[0].1;
    assert_eq!(b.cancel(task).await.expect("cancel"), TaskState::Cancelled);
    let w = read(&b, sub.id).await;
    assert_eq!(node_state(&w, "step-1"), NodeState::Cancelled);
    assert_eq!(node_state(&w, "step-2"), NodeState::Skipped);
    assert_eq!(w.state, WorkflowState::Failed);
    assert!(ready(&b).await.is_empty(), "nothing runs");
}

/// Two workflows run to their end: one succeeds, one fails (its task
/// dead-lettered); their ids.
async fn one_good_one_bad(b: &Subject) -> (WorkflowId, WorkflowId) {
    let good = b
        .submit_workflow(WorkflowSpec::group([call("ok", json!([]))]))
        .await
        .expect("submit")
        .id;
    let bad = b
        .submit_workflow(WorkflowSpec::group([call("boom", json!([]))]))
        .await
        .expect("submit")
        .id;
    drain(b, |r| match r.handler.as_str() {
        "boom" => FinishAction::DeadLetter {
            error: "boom".into(),
        },
        _ => done(json!(1)),
    })
    .await;
    (good, bad)
}

/// Pruning drops a workflow once it has ended and its retention passed: a
/// succeeded one after the finished tasks' retention, a failed one after
/// the dead tasks' (kept for inspection); a running one stays.
pub async fn ended_workflows_go_with_their_retention(b: Subject, clock: Arc<ManualClock>) {
    let (good, bad) = one_good_one_bad(&b).await;
    let running = b
        .submit_workflow(WorkflowSpec::group([call("later", json!([]))]))
        .await
        .expect("submit")
        .id;
    let retention = Retention {
        finished: Duration::from_secs(3600),
        dead: Duration::from_secs(7 * 86_400),
    };
    clock.advance(Duration::from_secs(1800));
    b.prune(retention).await.expect("prune");
    assert!(
        b.workflow(good).await.expect("read").is_some(),
        "kept within its retention"
    );
    clock.advance(Duration::from_secs(3600));
    b.prune(retention).await.expect("prune");
    assert!(
        b.workflow(good).await.expect("read").is_none(),
        "succeeded: gone"
    );
    assert_eq!(
        read(&b, bad).await.state,
        WorkflowState::Failed,
        "failed: kept"
    );
    clock.advance(Duration::from_secs(7 * 86_400));
    b.prune(retention).await.expect("prune");
    assert!(
        b.workflow(bad).await.expect("read").is_none(),
        "failed: gone at last"
    );
    assert_eq!(
        read(&b, running).await.state,
        WorkflowState::Running,
        "running: kept"
    );
}

/// Workflows are listed newest first with where each stands and how many
/// of its nodes are left, filtered by state and paged by id.
pub async fn workflows_are_listed_newest_first_by_state(b: Subject, _clock: Arc<ManualClock>) {
    let (good, bad) = one_good_one_bad(&b).await;
    let running = b
        .submit_workflow(WorkflowSpec::group([
            call("later", json!([])),
            call("later", json!([])),
        ]))
        .await
        .expect("submit")
        .id;
    let stopped = b
        .submit_workflow(WorkflowSpec::chain([
            call("later", json!([])),
            call("later", json!([])),
        ]))
        .await
        .expect("submit")
        .id;
    b.cancel_workflow(stopped).await.expect("cancel");
    let all = b
        .list_workflows(&WorkflowFilter::newest(10))
        .await
        .expect("list");
    let seen: Vec<(WorkflowId, WorkflowState, u32, u32)> = all
        .iter()
        .map(|s| (s.id, s.state, s.nodes, s.left))
        .collect();
    assert_eq!(
        seen,
        vec![
            (stopped, WorkflowState::Cancelled, 2, 0),
            (running, WorkflowState::Running, 2, 2),
            (bad, WorkflowState::Failed, 1, 0),
            (good, WorkflowState::Succeeded, 1, 0),
        ],
        "newest first, each with its state and nodes"
    );
    assert!(all[1].ended_at.is_none() && all[0].ended_at.is_some());
    for (state, want) in [
        (WorkflowState::Running, running),
        (WorkflowState::Succeeded, good),
        (WorkflowState::Failed, bad),
        (WorkflowState::Cancelled, stopped),
    ] {
        let only = b
            .list_workflows(&WorkflowFilter {
                state: Some(state),
                ..WorkflowFilter::newest(10)
            })
            .await
            .expect("list");
        let ids: Vec<WorkflowId> = only.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![want], "only the {} one", state.as_str());
    }
    let page = |before: Option<WorkflowId>| {
        let b = b.clone();
        async move {
            b.list_workflows(&WorkflowFilter {
                before,
                ..WorkflowFilter::newest(2)
            })
            .await
            .expect("list")
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None).await, vec![stopped, running]);
    assert_eq!(page(Some(running)).await, vec![bad, good]);
    assert!(page(Some(good)).await.is_empty(), "nothing older");
}

/// Retrying a failed workflow runs its failed part once and nothing else:
/// the step that succeeded keeps its result and does not run again, the
/// failed step runs with the same input, the step skipped after it runs
/// with the new result, and the callbacks follow the new end. A running
/// workflow is not retried; one with nothing failed puts nothing back.
pub async fn retrying_a_workflow_runs_its_failed_part_once(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::chain([
        call("add", json!([1])),
        call("flaky", json!([])),
        call("add", json!([10])),
    ])
    .on(
        WhenEnded::Success,
        NodeSpec::new("cheer", call("cheer", json!([]))),
    )
    .on(
        WhenEnded::Failure,
        NodeSpec::new("alarm", call("alarm", json!([]))),
    );
    let submitted = b.submit_workflow(spec).await.expect("submit");
    let id = submitted.id;
    assert_eq!(
        b.retry_workflow(id).await.expect("retry"),
        Some(Retried::Running),
        "a running workflow is not retried"
    );
    assert_eq!(
        b.retry_workflow(WorkflowId(u64::MAX))
            .await
            .expect("unknown"),
        None
    );
    let first = drain(&b, |r| match r.handler.as_str() {
        "flaky" => FinishAction::DeadLetter {
            error: "flaky".into(),
        },
        _ => add(r),
    })
    .await;
    let handlers: Vec<&str> = first.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(handlers, vec!["add", "flaky", "alarm"]);
    let failed = read(&b, id).await;
    assert_eq!(failed.state, WorkflowState::Failed);
    let first_task = failed.node("step-1").and_then(|n| n.task);
    assert_eq!(
        b.retry_workflow(id).await.expect("retry"),
        Some(Retried::Nodes(4)),
        "the failed step, the step skipped after it and both callbacks"
    );
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Running);
    assert_eq!(w.ended_at, None);
    assert_eq!(node_state(&w, "step-1"), NodeState::Succeeded);
    assert_eq!(w.node("step-1").and_then(|n| n.task), first_task);
    assert_eq!(node_state(&w, "step-2"), NodeState::Running);
    assert_eq!(node_state(&w, "step-3"), NodeState::Waiting);
    assert_eq!(node_state(&w, "cheer"), NodeState::Waiting);
    assert_eq!(node_state(&w, "alarm"), NodeState::Waiting);
    let listed = b
        .list_workflows(&WorkflowFilter {
            state: Some(WorkflowState::Running),
            ..WorkflowFilter::newest(10)
        })
        .await
        .expect("list");
    assert!(listed.iter().any(|s| s.id == id), "listed as running again");
    let second = drain(&b, |r| match r.handler.as_str() {
        "flaky" => done(json!(params(r)[0].as_i64().unwrap_or(0) + 40)),
        _ => add(r),
    })
    .await;
    assert_eq!(
        second,
        vec![
            ("flaky".to_string(), json!([1])),
            ("add".to_string(), json!([41, 10])),
            ("cheer".to_string(), json!([])),
        ],
        "only the failed part ran, with the kept result as its input"
    );
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Succeeded);
    assert!(w.ended_at.is_some());
    assert_eq!(node_state(&w, "alarm"), NodeState::Skipped);
    assert_eq!(
        b.retry_workflow(id).await.expect("retry"),
        Some(Retried::Nodes(0)),
        "nothing failed"
    );
    assert!(ready(&b).await.is_empty());
}

/// A cancelled workflow retried runs again from where the cancel stopped
/// it: the cancelled nodes run, and it can succeed.
pub async fn a_cancelled_workflow_retried_runs_again(b: Subject, _clock: Arc<ManualClock>) {
    let spec = WorkflowSpec::chain([call("add", json!([1])), call("add", json!([2]))]).on(
        WhenEnded::Failure,
        NodeSpec::new("alarm", call("alarm", json!([]))),
    );
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let running = ready(&b).await;
    assert_eq!(running.len(), 1);
    assert_eq!(b.cancel_workflow(id).await.expect("cancel"), Some(3));
    assert_eq!(
        b.retry_workflow(id).await.expect("retry"),
        Some(Retried::Nodes(3))
    );
    let late = report(&b, running[0].lease.clone(), done(json!(1))).await;
    assert!(late.is_err(), "the cancelled task's finish stays refused");
    assert_eq!(read(&b, id).await.state, WorkflowState::Running);
    let ran = drain(&b, add).await;
    assert_eq!(
        ran,
        vec![
            ("add".to_string(), json!([1])),
            ("add".to_string(), json!([1, 2])),
        ]
    );
    let w = read(&b, id).await;
    assert_eq!(w.state, WorkflowState::Succeeded);
    assert_eq!(node_state(&w, "alarm"), NodeState::Skipped);
}
