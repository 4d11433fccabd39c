//! A worker SIGKILLed while a chord's header tasks run, on the embedded
//! store, PostgreSQL, Redis and NATS: the killed worker's headers run again once their
//! leases run out, and the body runs exactly once, with every header's
//! result. (Loop it with `scripts/fault-rounds.py`-style repeats; CI runs
//! it once per backend.)

mod common;

use std::time::{Duration, Instant};

use common::namespace::Namespace;
use common::Env;
use conveyor::durable::workflow::{WorkflowSpec, WorkflowState};
use conveyor::durable::NewTask;
use conveyor::TaskState;
use conveyor_testkit::process::{pid_alive, Proc};

async fn killed_mid_chord(env: &Env) {
    let body_log = env.path("body.log");
    let cfg = env.config(&format!(
        "[worker]\nslots = 4\nlease = \"1s\"\npoll = \"50ms\"\n\
         [handlers.nap]\nprogram = \"sleep\"\nargs = [\"{{}}\"]\n\
         [handlers.tally]\nprogram = \"sh\"\n\
         args = [\"-c\", \"echo \\\"$1\\\" >> {log}\", \"tally\", \"{{}}\"]\n",
        log = body_log.display()
    ));
    let cfg = cfg.to_string_lossy().into_owned();
    let b = env.backend().await;
    let n = 12;
    let spec = WorkflowSpec::chord(
        (0..n).map(|_| NewTask::new("nap", b"0.3".to_vec())),
        NewTask::new("tally", b"[]".to_vec()),
    );
    let id = b.submit_workflow(spec).await.expect("submit").id;
    let mut first = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    common::wait_count(&b, TaskState::Running, 4, Duration::from_secs(30)).await;
    let victim = first.pid();
    first.kill9();
    assert!(!pid_alive(victim), "the worker is gone");
    let _second = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let deadline = Instant::now() + Duration::from_secs(90);
    let w = loop {
        let w = b.workflow(id).await.expect("read").expect("the workflow");
        if w.state != WorkflowState::Running {
            break w;
        }
        assert!(Instant::now() < deadline, "the workflow did not end: {w:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(w.state, WorkflowState::Succeeded, "{w:?}");
    let mut redelivered = 0;
    for node in w.nodes.iter().filter(|n| n.name.starts_with("header")) {
        let task = node.task.expect("a header's task");
        let rec = b.get(task).await.expect("get").expect("kept");
        redelivered += rec.attempts.saturating_sub(1);
    }
    assert!(redelivered >= 1, "the killed worker's headers ran again");
    let runs = std::fs::read_to_string(&body_log).expect("the body ran");
    let lines: Vec<&str> = runs.lines().collect();
    assert_eq!(lines.len(), 1, "the body ran once: {runs}");
    let params: serde_json::Value = serde_json::from_str(lines[0]).expect("the body's params");
    assert_eq!(
        params[0].as_array().map(Vec::len),
        Some(n),
        "every header's result: {params}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_chord_fires_the_body_once_embedded() {
    killed_mid_chord(&Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_chord_fires_the_body_once_postgres() {
    let ns = Namespace::postgres("wfcrash");
    killed_mid_chord(&Env::with_backend(&ns.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_chord_fires_the_body_once_redis() {
    let ns = Namespace::redis("wfcrash");
    killed_mid_chord(&Env::with_backend(&ns.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_chord_fires_the_body_once_nats() {
    let ns = Namespace::nats("wfcrash");
    killed_mid_chord(&Env::with_backend(&ns.url)).await;
}
