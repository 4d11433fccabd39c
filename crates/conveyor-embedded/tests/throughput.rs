//! A quick throughput measurement of the embedded backend on this machine's
//! disk, every commit fsynced. Ignored by default and never asserts on timings:
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-embedded cargo test -p conveyor-embedded --release \
//!     --test throughput -- --ignored --nocapture
//! ```
//!
//! `CONVEYOR_BENCH_TASKS` sets the task count per scenario (default 200000) and
//! `CONVEYOR_BENCH_DIR` the directory of the file (default: a temporary one).

#![allow(clippy::unwrap_used)] // a measurement: a panic is a failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{Backend, Finish, FinishAction, NewTask};
use conveyor_embedded::EmbeddedBackend;

const BATCH: usize = 1000;
const LEASE: Duration = Duration::from_secs(60);

fn tasks_per_scenario() -> usize {
    std::env::var("CONVEYOR_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn open(dir: &tempfile::TempDir, name: &str) -> Arc<EmbeddedBackend> {
    Arc::new(EmbeddedBackend::open(dir.path().join(name)).unwrap())
}

fn batch(n: usize) -> Vec<NewTask> {
    (0..n)
        .map(|_| NewTask::new("noop", b"{}".to_vec()))
        .collect()
}

fn report(name: &str, tasks: usize, took: Duration) {
    println!(
        "{name:<58} {tasks:>8} in {:>7.3}s = {:>9.0}/s",
        took.as_secs_f64(),
        tasks as f64 / took.as_secs_f64()
    );
}

fn completions(got: &[conveyor_core::Reserved]) -> Vec<Finish> {
    got.iter()
        .map(|r| Finish {
            lease: r.lease,
            action: FinishAction::Complete { result: None },
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand with --release"]
async fn throughput() {
    let n = tasks_per_scenario();
    let dir = match std::env::var("CONVEYOR_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    println!("file in {} (same disk as the project)", dir.path().display());

    // 1. enqueue_many of 1000, one caller.
    let b = open(&dir, "enqueue.db");
    let start = Instant::now();
    for _ in 0..n / BATCH {
        b.enqueue_many(batch(BATCH)).await.unwrap();
    }
    report("enqueue_many(1000), one caller", n, start.elapsed());

    // 2. enqueue_many of 1000, four concurrent callers (group commit).
    let b = open(&dir, "enqueue4.db");
    let start = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..4 {
        let b = b.clone();
        hs.push(tokio::spawn(async move {
            for _ in 0..n / BATCH / 4 {
                b.enqueue_many(batch(BATCH)).await.unwrap();
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    report("enqueue_many(1000), four concurrent callers", n, start.elapsed());

    // 3. End to end, one loop: enqueue 1000 → reserve 1000 → finish 1000.
    let b = open(&dir, "e2e.db");
    let q = vec!["default".to_string()];
    let start = Instant::now();
    for _ in 0..n / BATCH {
        b.enqueue_many(batch(BATCH)).await.unwrap();
        let got = b.reserve(&q, BATCH, LEASE).await.unwrap();
        assert_eq!(got.len(), BATCH);
        for r in b.finish(completions(&got)).await.unwrap() {
            r.unwrap();
        }
    }
    report("end to end, one loop (enqueue, reserve, finish by 1000)", n, start.elapsed());

    // 4. End to end, pipelined: one producer, two workers, concurrently.
    let b = open(&dir, "pipelined.db");
    let start = Instant::now();
    let producer = {
        let b = b.clone();
        tokio::spawn(async move {
            for _ in 0..n / BATCH {
                b.enqueue_many(batch(BATCH)).await.unwrap();
            }
        })
    };
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (b, q, done) = (b.clone(), q.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            while done.load(std::sync::atomic::Ordering::Relaxed) < n / BATCH * BATCH {
                let got = b.reserve(&q, BATCH, LEASE).await.unwrap();
                if got.is_empty() {
                    b.wait_for_work(&q, Duration::from_millis(5)).await;
                    continue;
                }
                let k = got.len();
                for r in b.finish(completions(&got)).await.unwrap() {
                    r.unwrap();
                }
                done.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    producer.await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    report("end to end, pipelined (1 producer, 2 workers, by 1000)", n, start.elapsed());

    // 5. One task per call: sequential (an fsync each) and 256 callers at once
    //    (group commit shares the fsyncs).
    let singles = (n / 20).max(1000);
    let b = open(&dir, "singles.db");
    let start = Instant::now();
    for _ in 0..singles / 10 {
        b.enqueue(NewTask::new("noop", b"{}".to_vec())).await.unwrap();
    }
    report("enqueue(1), one caller", singles / 10, start.elapsed());
    let start = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..256 {
        let b = b.clone();
        hs.push(tokio::spawn(async move {
            for _ in 0..singles / 256 {
                b.enqueue(NewTask::new("noop", b"{}".to_vec())).await.unwrap();
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    report("enqueue(1), 256 concurrent callers", singles / 256 * 256, start.elapsed());
}
