//! Workflows on Redis beyond the conformance cases: the end of a node's task
//! is recorded by the script that ended it, so a process that dies between
//! ending the task and settling the node loses nothing (maintenance settles
//! it, once); two processes settling nodes of one workflow at once never
//! both write; a chord of 10,000 fires its body once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::workflow::{NodeState, WorkflowSpec, WorkflowState};
use conveyor_core::{
    Backend, Clock, Finish, FinishAction, ManualClock, NewTask, ReserveParams, Timestamp,
};
use conveyor_redis::RedisBackend;

use common::Namespace;

fn queues() -> Vec<String> {
    vec!["default".to_string()]
}

/// A raw connection to the test Redis.
async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(common::redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// How many node ends of the namespace under `prefix` wait to be settled.
async fn unsettled(prefix: &str) -> i64 {
    redis::cmd("SCARD")
        .arg(format!("{prefix}wf:ended"))
        .query_async(&mut raw().await)
        .await
        .expect("SCARD")
}

/// Completes `reports` with the result each task's params `[i]` name (`i`).
fn echo_all(got: Vec<conveyor_core::Reserved>) -> Vec<Finish> {
    got.into_iter()
        .map(|r| {
            let text = String::from_utf8(r.payload.clone()).expect("utf-8");
            let result = text
                .trim_matches(|c| c == '[' || c == ']')
                .as_bytes()
                .to_vec();
            Finish::new(
                r.lease,
                FinishAction::Complete {
                    result: Some(result),
                },
            )
        })
        .collect()
}

#[tokio::test]
async fn an_end_recorded_but_not_settled_is_settled_by_maintenance_once() {
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let ns = Namespace::new(clock.clone()).await;
    let b: &dyn Backend = &ns.backend;
    let spec = WorkflowSpec::chain([
        NewTask::new("first", b"[1]".to_vec()),
        NewTask::new("second", b"[]".to_vec()),
    ]);
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let got = b
        .reserve(ReserveParams::new(&queues(), 10, Duration::from_secs(30)))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    // The task ends as the finish script ends it (recording the end in the
    // same call), and the process dies before it settles the node: the
    // script is called by hand, with no settle after it.
    let library = ns.backend.function_library().expect("a function library");
    let mut conn = raw().await;
    let reply: Vec<i64> = redis::cmd("FCALL")
        .arg(format!("{library}_finish"))
        .arg(0)
        .arg(ns.prefix())
        .arg(clock.now().as_millis())
        .arg(0)
        .arg(1)
        .arg(0)
        .arg(got[0].lease.id.0)
        .arg(got[0].lease.token)
        .arg("C")
        .arg(1)
        .arg("42")
        .query_async(&mut conn)
        .await
        .expect("finish by hand");
    assert_eq!(reply, vec![1, 1], "applied, one node end recorded");
    let ready = b
        .reserve(ReserveParams::new(&queues(), 10, Duration::from_secs(30)))
        .await
        .expect("reserve");
    assert!(ready.is_empty(), "not settled yet");
    let pending = unsettled(ns.prefix()).await;
    assert_eq!(pending, 1, "the end is recorded");
    for _ in 0..3 {
        b.recover_expired().await.expect("maintenance");
    }
    let w = b.workflow(id).await.expect("read").expect("exists");
    assert_eq!(
        w.node("step-1").expect("step-1").state,
        NodeState::Succeeded
    );
    assert_eq!(w.node("step-2").expect("step-2").state, NodeState::Running);
    let next = b
        .reserve(ReserveParams::new(&queues(), 10, Duration::from_secs(30)))
        .await
        .expect("reserve");
    assert_eq!(next.len(), 1, "settled once: one task for step 2");
    assert_eq!(next[0].payload, b"[42]", "the chain passed the result on");
    let pending = unsettled(ns.prefix()).await;
    assert_eq!(pending, 0, "the record went with the settle");
}

/// Drains the chord's tasks through `b`, `per` at a time; the body's params
/// each time it ran.
async fn drain(b: &RedisBackend, per: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut idle = 0;
    while idle < 20 {
        let got = b
            .reserve(ReserveParams::new(&queues(), per, Duration::from_secs(600)))
            .await
            .expect("reserve");
        if got.is_empty() {
            idle += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        idle = 0;
        bodies.extend(
            got.iter()
                .filter(|r| r.handler == "sum")
                .map(|r| r.payload.clone()),
        );
        for out in b.finish(echo_all(got)).await.expect("finish") {
            out.expect("applied");
        }
    }
    bodies
}

/// The body's params for a chord of `n` headers echoing `0..n`.
fn all_results(n: usize) -> Vec<u8> {
    let each: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!("[[{}]]", each.join(",")).into_bytes()
}

/// Two processes (two connections, each settling what it finished) work
/// one chord at once in small batches: their settles of one workflow
/// collide all the time, and every collision reads again, so the body runs
/// once with every header's result and no end is left unsettled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_settling_one_chord_fire_its_body_once() {
    let clock: Arc<ManualClock> = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let ns = Namespace::new(clock.clone()).await;
    let other = ns.another(clock.clone()).await;
    let n = 600;
    let header = (0..n).map(|i| NewTask::new("echo", format!("[{i}]").into_bytes()));
    let spec = WorkflowSpec::chord(header, NewTask::new("sum", b"[]".to_vec()));
    let main: &dyn Backend = &ns.backend;
    let id = main.submit_workflow(spec).await.expect("submit").id;
    let (a, b) = tokio::join!(drain(&ns.backend, 3), drain(&other, 3));
    let bodies: Vec<Vec<u8>> = a.into_iter().chain(b).collect();
    assert_eq!(bodies.len(), 1, "the body ran once");
    assert!(
        bodies[0] == all_results(n),
        "every header's result, in order"
    );
    let w = main.workflow(id).await.expect("read").expect("exists");
    assert_eq!(w.state, WorkflowState::Succeeded);
    let pending = unsettled(ns.prefix()).await;
    assert_eq!(pending, 0, "every end settled with its finish");
}

/// A chord of 10,000 header tasks, finished in batches of 500 by one
/// worker's calls: every end is settled with its finish (none left for
/// maintenance), and the body runs once with all 10,000 results in order.
#[tokio::test]
async fn a_chord_of_ten_thousand_fires_its_body_once() {
    let (ns, _clock) = Namespace::manual().await;
    let b: &dyn Backend = &ns.backend;
    let n = 10_000;
    let header = (0..n).map(|i| NewTask::new("echo", format!("[{i}]").into_bytes()));
    let spec = WorkflowSpec::chord(header, NewTask::new("sum", b"[]".to_vec()));
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let bodies = drain(&ns.backend, 500).await;
    assert_eq!(bodies.len(), 1, "the body runs once");
    assert!(
        bodies[0] == all_results(n),
        "the body gets every result in order: {}",
        String::from_utf8_lossy(&bodies[0][..200.min(bodies[0].len())])
    );
    let pending = unsettled(ns.prefix()).await;
    assert_eq!(pending, 0, "every end settled with its finish");
    let w = b.workflow(id).await.expect("read").expect("exists");
    assert_eq!(w.state, WorkflowState::Succeeded);
}

/// A second process on the same namespace keeps a graph that an expansion
/// made by the first leaves stale: it reads the expansion back (the hash's
/// `gn`), settles the added nodes and shows what the first shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expansion_is_seen_from_another_process() {
    let clock: Arc<ManualClock> = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let ns = Namespace::new(clock.clone()).await;
    let other = ns.another(clock.clone()).await;
    conveyor_testkit::conformance::an_expansion_is_seen_from_another_handle(
        Arc::new(ns.backend.clone()),
        Arc::new(other),
    )
    .await;
}
