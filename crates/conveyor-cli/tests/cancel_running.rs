//! `conveyor cancel` on a task a worker runs, on every backend that can
//! cancel: the task is cancelled at once, the worker holding it kills the
//! handler's process soon after (through the store's finish notifications:
//! the lease here is ten minutes, so its first renewal is 200 s away),
//! nothing it reports is kept, and the worker goes on taking tasks.

mod common;

use std::time::{Duration, Instant};

use common::namespace::Namespace;
use common::{stderr, stdout, Env};
use conveyor_testkit::process::{pid_alive, Proc};
use serde_json::Value;

fn submit(env: &Env, args: &[&str]) -> String {
    let out = env.run(&[&["submit"], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// Starts a worker on `env`, runs a long task, cancels it while it runs,
/// and checks what became of it and of the worker.
async fn cancel_a_running_task(env: Env) {
    let pid_file = env.dir.path().join("pid");
    let cfg = env
        .config(&format!(
            "[worker]\nslots = 2\npoll = \"20ms\"\nlease = \"10m\"\n\
             [handlers.ok]\nprogram = \"echo\"\nargs = [\"{{}}\"]\n\
             [handlers.slow]\nprogram = \"sh\"\nretries = 2\n\
             args = [\"-c\", \"echo $$ > {pid}.tmp && mv {pid}.tmp {pid} && exec sleep 600\"]\n",
            pid = pid_file.display()
        ))
        .to_string_lossy()
        .into_owned();
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let id = submit(&env, &["slow"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid: u32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().expect("a pid");
        }
        assert!(Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Long enough to be watched for a cancel (the watch begins at 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = env.run(&["cancel", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("task {id}: cancelled while it ran")),
        "{}",
        stdout(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while pid_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the cancelled task's process still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = env.run(&["result", &id]);
    assert_eq!(out.status.code(), Some(4), "cancelled: {}", stdout(&out));
    let out = env.run(&["show", &id, "--json"]);
    let shown: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(shown["state"], "cancelled");
    assert_eq!(shown["error"], "cancelled while it ran");
    assert_eq!(shown["attempts"], 1, "it never ran again: {shown}");
    let ok = submit(&env, &["ok", "\"after\""]);
    let out = env.run(&["wait", &ok, "--timeout", "60s"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the worker goes on: {}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store() {
    cancel_a_running_task(Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let ns = Namespace::redis("cancel_running");
    cancel_a_running_task(Env::with_backend(&ns.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let ns = Namespace::postgres("cancel_running");
    cancel_a_running_task(Env::with_backend(&ns.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats() {
    let ns = Namespace::nats("cancel_running");
    cancel_a_running_task(Env::with_backend(&ns.url)).await;
}
