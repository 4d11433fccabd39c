//! The `conveyor` binary, driven for real: worker from a TOML file, submit with
//! --wait, status, dead-letter commands, argv safety.

mod common;

use std::time::Duration;

use common::{stderr, stdout, Env};
use conveyor::TaskState;
use conveyor_testkit::process::Proc;

const CONFIG: &str = r#"
[worker]
slots = 4
poll = "50ms"

[handlers.echo]
program = "echo"
args = ["-n", "{msg}"]

[handlers.fail]
program = "false"
retries = 1
backoff = "10ms"

[handlers.args]
program = "printf"
args = ["%s|", "{0}", "{1}", "{}"]
"#;

fn start_worker(env: &Env) -> Proc {
    let cfg = env.config(CONFIG);
    let cfg = cfg.to_string_lossy().into_owned();
    Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("start worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_prints_the_result_and_params_never_reach_a_shell() {
    let env = Env::new();
    let _worker = start_worker(&env);
    let nasty = "hi; touch pwned $(touch pwned2) `touch pwned3` *\n'\"";
    let params = serde_json::json!({ "msg": nasty }).to_string();
    let out = env.run(&["submit", "echo", &params, "--wait", "--timeout", "30s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(result["code"], 0);
    assert_eq!(result["stdout"], nasty, "verbatim, one argv item");
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!env.path(f).exists(), "{f} was created: a shell ran");
    }
    let out = env.run(&[
        "submit",
        "args",
        r#"["a b", "c"]"#,
        "--wait",
        "--timeout",
        "30s",
    ]);
    let result: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(result["stdout"], r#"a b|c|["a b","c"]|"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_go_to_the_dead_letters_and_come_back() {
    let env = Env::new();
    let worker = start_worker(&env);
    let out = env.run(&["submit", "fail", "--wait", "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(1), "a dead task exits 1");
    assert!(stderr(&out).contains("dead"), "{}", stderr(&out));
    // A task whose handler no worker has is not dead-lettered: it waits for
    // a worker that has it, and `status` says so.
    let out = env.run(&["submit", "nobody", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.run(&["status", "--json"]);
        if stdout(&out)
            .contains(r#"{"unserved":{"handler":"nobody","queue":"default","waiting":1}}"#)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never named the unserved handler: {}",
            stdout(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = env.run(&["dead", "list"]);
    let listed = stdout(&out);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains("attempts=2"),
        "retries = 1 → 2 attempts: {listed}"
    );
    let out = env.run(&["status", "--json"]);
    let status: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().expect("a queue")).expect("json");
    assert_eq!(status["queue"], "default");
    assert_eq!(status["dead"], 1);
    // The table says so too. (Looked at until it does: the worker may be
    // meeting the task for the first time just then, holding it for the
    // moment it takes to hand it back.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let table = stdout(&env.run(&["status"]));
        assert!(
            table.contains("DEAD") && table.contains("default"),
            "{table}"
        );
        if table.contains("queue default: 1 task of handler nobody") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the table never named the unserved handler: {table}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(worker);
    let out = env.run(&["dead", "retry", "--all"]);
    assert!(stdout(&out).contains("requeued 1"), "{}", stdout(&out));
    let b = env.backend().await;
    // The requeued task and the one that waits for its handler.
    common::wait_count(&b, TaskState::Available, 2, Duration::from_secs(5)).await;
    let out = env.run(&["dead", "purge"]);
    assert!(stdout(&out).contains("purged 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error() {
    let env = Env::new();
    let out = env.run(&["submit", "echo", "{not json"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));
    let cfg = env.config("[handlers.x]\nprogram = \"echo\"\nargs = [\"{unclosed\"]\n");
    let out = env.run(&["worker", "--config", &cfg.to_string_lossy()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unclosed"), "{}", stderr(&out));
    let out = env.run(&["worker", "--config", "/nonexistent/conveyor.toml"]);
    assert!(
        stderr(&out).contains("cannot read config"),
        "{}",
        stderr(&out)
    );
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_conveyor"));
    let out = c
        .args(["--backend", "nosuch://x", "status"])
        .output()
        .expect("run");
    assert!(stderr(&out).contains("unknown backend"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_and_delayed_submits() {
    let env = Env::new();
    let first = stdout(&env.run(&["submit", "echo", "{}", "--unique", "u1"]));
    let again = env.run(&["submit", "echo", "{}", "--unique", "u1"]);
    assert_eq!(first, stdout(&again), "same id for the same unique key");
    assert!(stderr(&again).contains("unique key"));
    env.run(&["submit", "echo", "{}", "--delay", "1h"]);
    let out = env.run(&["status", "--json"]);
    let status: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().expect("a queue")).expect("json");
    assert_eq!(status["counts"]["scheduled"], 1);
    assert_eq!(status["counts"]["available"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_at_an_absolute_time() {
    let env = Env::new();
    let id = stdout(&env.run(&["submit", "echo", "{}", "--at", "2099-01-02T03:04:05+01:00"]));
    let id: u64 = id.trim().parse().expect("an id");
    let b = env.backend().await;
    let task = b
        .get(conveyor::TaskId(id))
        .await
        .expect("get")
        .expect("the task");
    assert_eq!(task.state, TaskState::Scheduled);
    assert_eq!(
        task.run_at,
        conveyor::Timestamp::parse_rfc3339("2099-01-02T02:04:05Z").expect("a time")
    );
    // With --delay too: the later of the two.
    let later = stdout(&env.run(&[
        "submit",
        "echo",
        "{}",
        "--at",
        "2001-01-01T00:00:00Z",
        "--delay",
        "1h",
    ]));
    let later = b
        .get(conveyor::TaskId(later.trim().parse().expect("an id")))
        .await
        .expect("get")
        .expect("the task");
    assert_eq!(later.state, TaskState::Scheduled);
    // A time without its offset, or no time at all, is refused saying the
    // form.
    for bad in ["2099-01-02T03:04:05", "tomorrow"] {
        let out = env.run(&["submit", "echo", "{}", "--at", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("2026-11-27T22:30:00Z"), "{bad}: {err}");
    }
}

/// SIGTERM: the worker stops reserving, lets the running task finish within the
/// grace period and exits 0.
///
/// "Running" here is the handler's process having started: a task the store
/// shows as running may still be on its way from the claim to a slot, and one
/// that has not started when the stop comes is handed back, not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_gracefully() {
    let env = Env::new();
    let started = env.path("started");
    let cfg = env.config(&format!(
        "[worker]\npoll = \"50ms\"\n[handlers.nap]\nprogram = \"sh\"\n\
         args = [\"-c\", \"touch '{}' && sleep \\\"$1\\\"\", \"nap\", \"{{}}\"]\n",
        started.display()
    ));
    let mut worker =
        Proc::spawn(env.cmd(&["worker", "--config", &cfg.to_string_lossy()])).expect("worker");
    let id = stdout(&env.run(&["submit", "nap", "1"]));
    let b = env.backend().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the handler never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.signal(libc::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(status.success());
    let rec = b
        .get(conveyor::TaskId(id.trim().parse().expect("id")))
        .await
        .expect("get")
        .expect("task");
    assert_eq!(
        rec.state,
        TaskState::Completed,
        "finished within the grace period"
    );
}
