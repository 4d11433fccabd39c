//! Persistent handler processes, with real Python children speaking the
//! line protocol through the shipped helper (`conveyor_handler.py`): children
//! are reused, and crashing, hanging, leaking and chatty children lose no task.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{
    ErrorKind, Handler, OutcomeKind, PersistentProcess, Pool, RetryPolicy, TaskOptions, TaskResult,
};
use serde_json::{json, Value};

/// The handlers every test draws from, in one Python program.
const PROGRAM: &str = r#"
import os, sys, time
from conveyor_handler import serve, Retry, Fail, Discard

kept = []

def me(p, task):
    return {"pid": os.getpid(), "n": p["n"], "attempt": task.attempt}

def echo(p, task):
    return me(p, task)

def crashy(p, task):
    if task.attempt == 1 and p["n"] % 3 == 0:
        sys.stderr.write("about to crash on %d\n" % p["n"])
        sys.stderr.flush()
        os._exit(7)
    return me(p, task)

def hang(p, task):
    if task.attempt == 1 and p["n"] % 4 == 0:
        with open(os.path.join(p["dir"], "hung-%d" % os.getpid()), "w") as f:
            f.write("x")
        time.sleep(3600)
    return me(p, task)

def slow(p, task):
    time.sleep(p["s"])
    return me(p, task)

def leaky(p, task):
    kept.append(b"x" * (16 << 20))
    return me(p, task)

def chatty(p, task):
    print("a print from task", task.id)
    os.write(1, b"raw bytes on fd 1\n")
    sys.stderr.write("a stderr line\n")
    return me(p, task)

def modes(p, task):
    mode = p["mode"]
    if mode == "retry" and task.attempt == 1:
        raise Retry("not yet", after=0.05)
    if mode == "fail":
        raise Fail("never")
    if mode == "discard":
        raise Discard("stale")
    if mode == "boom":
        raise ValueError("bad value")
    if mode == "deadline":
        return {"remaining": task.remaining()}
    return me(p, task)

serve({"echo": echo, "crashy": crashy, "hang": hang, "slow": slow, "leaky": leaky,
       "chatty": chatty, "modes": modes})
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tasks.py"), PROGRAM).unwrap();
        Setup { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spec(&self) -> PersistentProcess {
        let helper =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conveyor-cli/helpers/python");
        PersistentProcess::new("python3")
            .arg(self.path().join("tasks.py"))
            .env("PYTHONPATH", helper)
            .env("PYTHONUNBUFFERED", "1")
    }
}

/// Runs `params` through `h` on one job; the results in submission order.
async fn run_all(h: &Handler<Value, Value>, params: Vec<Value>) -> Vec<TaskResult> {
    let pool = Pool::builder().workers(8).process_limit(8).build().unwrap();
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    let job = pool
        .job()
        .on_task_complete(move |res| r.lock().unwrap().push(res))
        .start()
        .unwrap();
    let mut ids = Vec::new();
    for p in params {
        ids.push(
            job.submit_with(h, p, TaskOptions::new())
                .await
                .unwrap()
                .id(),
        );
    }
    job.await;
    let mut all = std::mem::take(&mut *results.lock().unwrap());
    all.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
    all
}

fn numbered(n: u64) -> Vec<Value> {
    (0..n).map(|n| json!({ "n": n })).collect()
}

fn output(r: &TaskResult) -> &Value {
    match r.output::<Value>() {
        Some(v) => v,
        None => panic!("task {} has no output: {:?}", r.id, r.outcome.error()),
    }
}

fn pids(results: &[TaskResult]) -> BTreeSet<u64> {
    results
        .iter()
        .map(|r| output(r)["pid"].as_u64().unwrap())
        .collect()
}

fn all_succeeded(results: &[TaskResult], n: usize) {
    assert_eq!(results.len(), n);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            r.outcome.kind(),
            OutcomeKind::Succeeded,
            "task {i}: {:?}",
            r.outcome.error()
        );
        assert_eq!(output(r)["n"], i as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_reuse_a_few_children() {
    let s = Setup::new();
    let h = Handler::persistent("echo", s.spec().processes(3));
    let results = run_all(&h, numbered(300)).await;
    all_succeeded(&results, 300);
    let pids = pids(&results);
    assert!(
        (1..=3).contains(&pids.len()),
        "at most 3 children: {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_crashes_mid_task_is_replaced_and_the_task_retried() {
    let s = Setup::new();
    let h = Handler::persistent("crashy", s.spec().processes(2)).retry(
        RetryPolicy::attempts(3).backoff(Duration::from_millis(10), Duration::from_millis(50)),
    );
    let results = run_all(&h, numbered(30)).await;
    all_succeeded(&results, 30);
    for (i, r) in results.iter().enumerate() {
        let want = if i % 3 == 0 { 2 } else { 1 };
        assert_eq!(r.attempts, want, "task {i}");
        assert_eq!(output(r)["attempt"], want);
    }
    assert!(pids(&results).len() >= 2, "crashed children were replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_reported_with_its_exit_and_stderr() {
    let s = Setup::new();
    let h = Handler::persistent("crashy", s.spec()).retry(RetryPolicy::none());
    let results = run_all(&h, vec![json!({"n": 3})]).await;
    let e = results[0].outcome.error().unwrap();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    for part in ["broke off the task", "exit code 7", "about to crash on 3"] {
        assert!(e.message().contains(part), "{part:?} in {}", e.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_child_is_killed_at_the_timeout_and_replaced() {
    let s = Setup::new();
    let dir = s.path().to_string_lossy().into_owned();
    let h = Handler::persistent("hang", s.spec().processes(2))
        .timeout(Duration::from_secs(3))
        .retry(
            RetryPolicy::attempts(2).backoff(Duration::from_millis(10), Duration::from_millis(10)),
        );
    let params = (0..8).map(|n| json!({"n": n, "dir": dir})).collect();
    let results = run_all(&h, params).await;
    all_succeeded(&results, 8);
    assert_eq!(results[0].attempts, 2);
    assert_eq!(results[4].attempts, 2);
    let hung: Vec<u32> = std::fs::read_dir(s.path())
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_prefix("hung-")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(hung.len(), 2, "two children hung");
    for pid in hung {
        assert!(
            !conveyor_testkit::process::pid_alive(pid),
            "hung child {pid} was killed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_beyond_the_children_wait_before_their_timeout_starts() {
    let s = Setup::new();
    // One child, four tasks of 0.8 s, a 2 s timeout: the last starts 2.4 s
    // after the first. Waiting for the child inside the attempt would time
    // it out; waiting at dispatch does not. A higher concurrency asked for
    // later is lowered to the one child.
    let h = Handler::persistent("slow", s.spec().processes(1))
        .concurrency(8)
        .timeout(Duration::from_secs(2))
        .retry(RetryPolicy::none());
    let params = (0..4).map(|n| json!({"n": n, "s": 0.8})).collect();
    let results = run_all(&h, params).await;
    all_succeeded(&results, 4);
    assert_eq!(pids(&results).len(), 1, "one child ran them all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_recycled_after_their_share_of_tasks() {
    let s = Setup::new();
    let h = Handler::persistent("echo", s.spec().processes(2).max_tasks_per_child(5));
    let results = run_all(&h, numbered(40)).await;
    all_succeeded(&results, 40);
    assert!(
        pids(&results).len() >= 8,
        "40 tasks, 5 per child: {:?}",
        pids(&results)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_past_its_memory_ceiling_is_recycled() {
    let s = Setup::new();
    // Each task keeps 16 MiB for good: a child passes 64 MiB within a few tasks.
    let h = Handler::persistent("leaky", s.spec().processes(1).max_memory(64 << 20));
    let results = run_all(&h, numbered(20)).await;
    all_succeeded(&results, 20);
    let pids = pids(&results);
    assert!(
        pids.len() >= 4,
        "20 leaky tasks at 16 MiB each, 64 MiB ceiling: {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_ask_for_a_retry_a_failure_or_a_discard() {
    let s = Setup::new();
    let h = Handler::persistent("modes", s.spec())
        .retry(RetryPolicy::attempts(3).backoff(Duration::from_secs(60), Duration::from_secs(60)))
        .timeout(Duration::from_secs(60));
    let modes = ["retry", "fail", "discard", "deadline"];
    let params = modes.iter().map(|m| json!({"n": 0, "mode": m})).collect();
    let r = run_all(&h, params).await;
    // retry_after 0.05 s overrides the 60 s backoff.
    assert_eq!(
        (r[0].outcome.kind(), r[0].attempts),
        (OutcomeKind::Succeeded, 2)
    );
    let e = r[1].outcome.error().unwrap();
    assert_eq!(
        (e.kind(), e.message(), r[1].attempts),
        (ErrorKind::Permanent, "never", 1)
    );
    let e = r[2].outcome.error().unwrap();
    assert_eq!(
        (e.kind(), e.message(), r[2].attempts),
        (ErrorKind::Discard, "stale", 1)
    );
    let remaining = output(&r[3])["remaining"].as_f64().unwrap();
    assert!(remaining > 0.0 && remaining <= 60.0, "{remaining}");
    // An exception is an ordinary, retryable failure; its error is the
    // exception line, then the traceback.
    let once = Handler::persistent("modes", s.spec()).retry(RetryPolicy::none());
    let r = run_all(&once, vec![json!({"n": 0, "mode": "boom"})]).await;
    let e = r[0].outcome.error().unwrap();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    let (head, traceback) = e.message().split_once("\n\n").expect("a traceback");
    assert_eq!(head, "ValueError: bad value");
    assert!(
        traceback.starts_with("Traceback (most recent call last):")
            && traceback.contains("raise ValueError(\"bad value\")"),
        "{traceback}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_and_raw_writes_do_not_break_the_protocol() {
    let s = Setup::new();
    let h = Handler::persistent("chatty", s.spec().processes(2));
    let results = run_all(&h, numbered(50)).await;
    all_succeeded(&results, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_cannot_start_fails_for_good() {
    let s = Setup::new();
    let h: Handler<Value, Value> = Handler::persistent(
        "x",
        PersistentProcess::new(s.path().join("no-such-program")),
    )
    .retry(RetryPolicy::attempts(5));
    let r = run_all(&h, numbered(1)).await;
    let e = r[0].outcome.error().unwrap();
    assert_eq!((e.kind(), r[0].attempts), (ErrorKind::Permanent, 1));
    assert!(e.message().contains("cannot start"), "{}", e.message());
}
