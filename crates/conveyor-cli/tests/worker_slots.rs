//! `slots` means what it says: a `conveyor worker` with 4 slots runs 4
//! handler processes at once on a 2-core machine (the process lane used to
//! stop at the core count). Each task is a barrier: it marks itself running,
//! then waits (up to 15 s) until 4 tasks are running at the same time, and
//! fails — dead-lettered, no retries — if they never are. No wall time is
//! judged: only whether the 4 executions overlapped. On every backend: the
//! embedded file, Redis and PostgreSQL.

mod common;

use std::time::Duration;

use common::namespace::Namespace;
use common::Env;
use conveyor::TaskState;
use conveyor_testkit::process::Proc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_runs_a_process_at_once_embedded() {
    barrier(Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_runs_a_process_at_once_redis() {
    let ns = Namespace::redis("slots");
    barrier(Env::with_backend(&ns.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_runs_a_process_at_once_postgres() {
    let ns = Namespace::postgres("slots");
    barrier(Env::with_backend(&ns.url)).await;
}

/// Four barrier tasks on a worker with four slots.
async fn barrier(env: Env) {
    let running = env.path("running");
    std::fs::create_dir(&running).expect("mkdir");
    let script = format!(
        "touch '{r}/'\"$1\"; i=0; \
         while [ $(ls '{r}' | wc -l) -lt 4 ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; \
         [ $(ls '{r}' | wc -l) -ge 4 ]",
        r = running.display()
    );
    let cfg = env.config(&format!(
        "[worker]\nslots = 4\npoll = \"20ms\"\n\
         [handlers.barrier]\nprogram = \"sh\"\nargs = [\"-c\", {script:?}, \"_\", \"{{n}}\"]\n\
         retries = 0\ntimeout = \"30s\"\n"
    ));
    let cfg = cfg.to_string_lossy().into_owned();
    for n in 0..4 {
        let out = env.run(&["submit", "barrier", &format!("{{\"n\": {n}}}")]);
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let b = env.backend().await;
    // stderr (where the worker's start line is logged, at info) joins
    // stdout, which Proc reads.
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "exec \"$0\" \"$@\" 2>&1",
        env!("CARGO_BIN_EXE_conveyor"),
    ])
    .args(["--backend", &env.url(), "worker", "--config", &cfg])
    .env("CONVEYOR_LOG", "info")
    .current_dir(env.dir.path());
    let worker = Proc::spawn(cmd).expect("worker");
    let start = worker.wait_for("conveyor worker:", Duration::from_secs(30));
    assert!(
        start
            .as_deref()
            .is_some_and(|l| l.contains("4 slots: up to 4 handler processes at once")),
        "the start line tells the real limits: {start:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (done, dead) = loop {
        let stats = b.stats().await.expect("stats");
        let count = |s: TaskState| stats.iter().map(|q| q.count(s)).sum::<u64>();
        let (done, dead) = (count(TaskState::Completed), count(TaskState::Dead));
        if done + dead == 4 || std::time::Instant::now() > deadline {
            break (done, dead);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead, 0, "the 4 tasks never ran at the same time");
    assert_eq!(done, 4);
    drop(worker);
}
