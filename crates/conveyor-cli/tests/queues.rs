//! `conveyor queue pause|resume|list` against an embedded file, with a real
//! worker: a paused queue's tasks wait while another queue's run; resumed,
//! they finish. The pause lives in the file, so every process sees it.

mod common;

use std::time::Duration;

use common::{stderr, stdout, Env};
use conveyor::TaskState;
use conveyor_testkit::process::Proc;

const CONFIG: &str = r#"
[worker]
slots = 2
poll = "50ms"
queues = ["held", "free"]

[handlers.echo]
program = "echo"
args = ["-n", "{msg}"]
"#;

fn submit(env: &Env, queue: &str) -> String {
    let out = env.run(&["submit", "echo", r#"{"msg":"hi"}"#, "--queue", queue]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn list(env: &Env) -> Vec<serde_json::Value> {
    let out = env.run(&["queue", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_waits_for_every_worker_until_resumed() {
    let env = Env::new();
    // The store exists before the queue commands run (they never create one).
    let first = submit(&env, "held");
    let out = env.run(&["queue", "pause", "held"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "paused held");
    let out = env.run(&["queue", "pause", "held"]);
    assert_eq!(stdout(&out).trim(), "held was paused already");

    let cfg = env.config(CONFIG);
    let cfg = cfg.to_string_lossy().into_owned();
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("start worker");
    let second = submit(&env, "held");
    // Tasks of the other queue run to their end, one after another, while
    // the held ones wait: the worker reserves from both queues each time.
    for _ in 0..3 {
        let id = submit(&env, "free");
        let out = env.run(&["wait", &id, "--timeout", "30s"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let backend = env.backend().await;
    for id in [&first, &second] {
        let id = conveyor::TaskId(id.parse().expect("an id"));
        let task = backend.get(id).await.expect("get").expect("the task");
        assert_eq!(task.state, TaskState::Available, "held waits");
    }
    let rows = list(&env);
    let held = rows.iter().find(|r| r["queue"] == "held").expect("held");
    assert_eq!(
        (&held["paused"], &held["available"]),
        (&serde_json::json!(true), &serde_json::json!(2))
    );
    let table = stdout(&env.run(&["queue", "list"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("held") && l.contains("paused")),
        "{table}"
    );

    let out = env.run(&["queue", "resume", "held"]);
    assert_eq!(stdout(&out).trim(), "resumed held", "{}", stderr(&out));
    let out = env.run(&["wait", &first, &second, "--timeout", "30s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["queue", "resume", "held"]);
    assert_eq!(stdout(&out).trim(), "held was not paused");
    assert!(list(&env).iter().all(|r| r["paused"] == false));
    common::wait_count(&backend, TaskState::Completed, 5, Duration::from_secs(30)).await;
}

#[test]
fn an_empty_queue_name_is_refused() {
    let env = Env::new();
    submit(&env, "default");
    let out = env.run(&["queue", "pause", ""]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("queue name is empty"),
        "{}",
        stderr(&out)
    );
}
