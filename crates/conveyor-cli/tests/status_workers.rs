//! `conveyor status` tells running tasks from reserved ones through the
//! workers' heartbeats: three tasks held by a worker with three slots show as
//! three running on one live worker; once the worker stops, it shows as
//! stopped. Each task waits for a file to disappear, so they stay running
//! until the test lets them go.

mod common;

use std::time::{Duration, Instant};

use common::{stdout, Env};
use conveyor::TaskState;
use conveyor_testkit::process::Proc;
use serde_json::Value;

/// Polls `conveyor status --json` until `pred` holds for its worker lines.
fn wait_status(env: &Env, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.run(&["status", "--json"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let workers: Vec<Value> = stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("worker").cloned())
            .collect();
        if pred(&workers) {
            return workers;
        }
        assert!(Instant::now() < deadline, "never saw {what}: {workers:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_running_tasks_and_workers() {
    let env = Env::new();
    let gate = env.path("gate");
    std::fs::write(&gate, "closed").expect("gate");
    let script = format!("while [ -e '{}' ]; do sleep 0.05; done", gate.display());
    let cfg = env.config(&format!(
        "[worker]\nslots = 3\npoll = \"20ms\"\n\
         [handlers.hold]\nprogram = \"sh\"\nargs = [\"-c\", {script:?}]\n"
    ));
    let cfg = cfg.to_string_lossy().into_owned();
    for _ in 0..4 {
        assert!(env.run(&["submit", "hold"]).status.success());
    }
    let mut worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let workers = wait_status(&env, "3 running tasks", |ws| {
        ws.len() == 1 && ws[0]["running"] == 3 && ws[0]["state"] == "alive"
    });
    assert_eq!(workers[0]["slots"], 3);
    assert_eq!(workers[0]["reserved"], 3);
    assert_eq!(workers[0]["queues"], serde_json::json!(["default"]));
    let table = stdout(&env.run(&["status"]));
    assert!(table.contains("RESERVED"), "{table}");
    assert!(
        table.contains("1 worker alive: 3 tasks running, 0 reserved and waiting"),
        "{table}"
    );
    std::fs::remove_file(&gate).expect("open the gate");
    let b = env.backend().await;
    common::wait_count(&b, TaskState::Completed, 4, Duration::from_secs(30)).await;
    worker.signal(libc::SIGTERM);
    assert!(worker
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let workers = wait_status(&env, "a stopped worker", |ws| {
        ws.len() == 1 && ws[0]["state"] == "stopped"
    });
    assert_eq!(
        (
            workers[0]["running"].as_u64(),
            workers[0]["completed"].as_u64()
        ),
        (Some(0), Some(4))
    );
}

/// A task whose handler no live worker has waits in its queue (the worker
/// hands it back, spending no attempt) and `status` says so; a worker that
/// has the handler then runs it on its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_tasks_waiting_for_a_handler_nobody_serves() {
    let env = Env::new();
    let old = env.path("old.toml");
    std::fs::write(
        &old,
        "[worker]\nslots = 2\npoll = \"20ms\"\n[handlers.old]\nprogram = \"true\"\n",
    )
    .expect("config");
    let new = env.path("new.toml");
    std::fs::write(
        &new,
        "[worker]\nslots = 2\npoll = \"20ms\"\n[handlers.old]\nprogram = \"true\"\n\
         [handlers.new]\nprogram = \"true\"\n",
    )
    .expect("config");
    for h in ["old", "new", "new", "old"] {
        assert!(env.run(&["submit", h]).status.success());
    }
    let old = old.to_string_lossy().into_owned();
    let mut first = Proc::spawn(env.cmd(&["worker", "--config", &old])).expect("worker");
    let b = env.backend().await;
    common::wait_count(&b, TaskState::Completed, 2, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let unserved = loop {
        let out = env.run(&["status", "--json"]);
        let lines: Vec<Value> = stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("unserved").cloned())
            .collect();
        if !lines.is_empty() {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed the unserved handler"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        unserved,
        vec![serde_json::json!({"queue": "default", "handler": "new", "waiting": 2})]
    );
    let table = stdout(&env.run(&["status"]));
    assert!(
        table.contains("queue default: 2 tasks of handler new"),
        "{table}"
    );
    assert_eq!(
        conveyor_testkit::count_in(b.as_ref(), TaskState::Dead).await,
        0
    );
    let new = new.to_string_lossy().into_owned();
    let mut second = Proc::spawn(env.cmd(&["worker", "--config", &new])).expect("worker");
    common::wait_count(&b, TaskState::Completed, 4, Duration::from_secs(30)).await;
    for w in [&mut first, &mut second] {
        w.signal(libc::SIGTERM);
        assert!(w.wait_exit(Duration::from_secs(30)).is_some());
    }
    let done = b
        .list(&conveyor::durable::ListParams::new(TaskState::Completed))
        .await
        .expect("list");
    for t in done {
        assert_eq!(t.attempts, 1, "{} took {} attempts", t.handler, t.attempts);
    }
}
