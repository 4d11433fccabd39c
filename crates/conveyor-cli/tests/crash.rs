//! Crash tests with real processes: a worker SIGKILLed mid-task loses nothing;
//! a producer SIGKILLed mid-batch has stored every task it acknowledged.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{stdout, Env};
use conveyor::{TaskId, TaskState};
use conveyor_testkit::count_in;
use conveyor_testkit::process::{pid_alive, Proc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_loses_nothing() {
    let env = Env::new();
    let cfg = env.config(
        "[worker]\nslots = 4\nlease = \"1s\"\npoll = \"50ms\"\n\
         [handlers.nap]\nprogram = \"sleep\"\nargs = [\"{}\"]\n",
    );
    let cfg = cfg.to_string_lossy().into_owned();
    let n = 12;
    let mut ids = Vec::new();
    for _ in 0..n {
        let out = env.run(&["submit", "nap", "0.3"]);
        assert!(out.status.success());
        ids.push(TaskId(stdout(&out).trim().parse().expect("id")));
    }
    let b = env.backend().await;
    let mut first = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    common::wait_count(&b, TaskState::Running, 4, Duration::from_secs(30)).await;
    let victim = first.pid();
    first.kill9();
    assert!(!pid_alive(victim), "the worker is gone");
    let running_at_kill = count_in(b.as_ref(), TaskState::Running).await;
    assert!(running_at_kill >= 1, "tasks were in flight at the kill");
    let _second = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    common::wait_count(&b, TaskState::Completed, n, Duration::from_secs(60)).await;
    let mut redelivered = 0;
    for id in &ids {
        let rec = b.get(*id).await.expect("get").expect("present");
        assert_eq!(rec.state, TaskState::Completed);
        redelivered += rec.attempts.saturating_sub(1);
    }
    eprintln!("{running_at_kill} in flight at the kill, {redelivered} redeliveries");
    assert!(redelivered >= 1, "the killed worker's tasks ran again");
    assert!(u64::from(redelivered) <= running_at_kill.max(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_killed_mid_batch_stored_every_acknowledged_task() {
    let env = Env::new();
    let mut cmd = env.cmd(&["submit", "nap", "--lines", "--batch", "100"]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("producer");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        for i in 0..1_000_000u64 {
            if writeln!(stdin, "{i}").is_err() {
                return;
            }
        }
    });
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 2_000 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            acked.insert(line.trim().parse::<u64>().expect("id"));
        }
    }
    // Kill it while it is feeding and storing batches.
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        acked.insert(line.trim().parse::<u64>().expect("id"));
    }
    let _ = feeder.join();
    assert!(acked.len() >= 2_000);
    let b = env.backend().await;
    for id in &acked {
        assert!(
            b.get(TaskId(*id)).await.expect("get").is_some(),
            "acknowledged task {id} is missing"
        );
    }
    let stored = count_in(b.as_ref(), TaskState::Available).await;
    assert_eq!(stored % 100, 0, "batches are all or nothing: {stored}");
    assert!(stored >= acked.len() as u64);
    drop(Proc::spawn(env.cmd(&["status"])).ok());
}
