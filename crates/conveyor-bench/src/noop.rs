//! No-op tasks through the full path: producer → bounded queue → 50 workers →
//! result handler → callback, for conveyor and for a hand-written tokio version
//! (same process, same allocator), then for Python asyncio and
//! `ThreadPoolExecutor` baselines (see [`crate::python`]) when `python3` exists.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use conveyor::{Handler, Pool, TaskError};
use tokio::sync::{mpsc, Mutex};

use crate::python::{self, Baseline};
use crate::report::Report;

const WORKERS: usize = 50;
const CAPACITY: usize = 1000;

/// conveyor: one producer submits `n` no-op tasks; the callback counts them.
pub async fn conveyor_noop(n: u64) -> f64 {
    let pool = Pool::builder().workers(WORKERS).build().expect("pool");
    let noop = Handler::io("noop", |i: u64, _ctx| async move { Ok::<_, TaskError>(i) });
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let start = Instant::now();
    let job = pool
        .job()
        .queue_capacity(CAPACITY)
        .result_capacity(CAPACITY)
        .on_task_complete(move |_r| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .start()
        .expect("job");
    for i in 0..n {
        if job.submit(&noop, i).await.is_err() {
            break;
        }
    }
    let summary = job.await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(seen.load(Ordering::Relaxed), n);
    assert_eq!(summary.succeeded, n);
    n as f64 / secs
}

/// The hand-written tokio equivalent: a bounded mpsc shared by 50 worker tasks
/// behind a mutex, a bounded result channel and a result handler task.
pub async fn tokio_noop(n: u64) -> f64 {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<u64>(CAPACITY);
    let (res_tx, mut res_rx) = mpsc::channel::<Result<u64, String>>(CAPACITY);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        let rx = rx.clone();
        let res_tx = res_tx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(i) = next else { break };
                let out = async move { Ok::<u64, String>(i) }.await;
                if res_tx.send(out).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(res_tx);
    let handler = tokio::spawn(async move {
        let mut seen = 0u64;
        while let Some(r) = res_rx.recv().await {
            if r.is_ok() {
                seen += 1;
            }
        }
        seen
    });
    for i in 0..n {
        if tx.send(i).await.is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let seen = handler.await.unwrap_or(0);
    assert_eq!(seen, n);
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs conveyor against the hand-written tokio version (best of 3 each, after a
/// warm-up), then against the Python baselines when `python3` is available.
pub async fn run(report: &mut Report, quick: bool) {
    let n = if quick { 100_000 } else { 1_000_000 };
    // Warm up both paths once.
    conveyor_noop(n / 10).await;
    tokio_noop(n / 10).await;
    let mut best_c: f64 = 0.0;
    let mut best_t: f64 = 0.0;
    for _ in 0..3 {
        best_t = best_t.max(tokio_noop(n).await);
        best_c = best_c.max(conveyor_noop(n).await);
    }
    report.add("noop_full_path", "tokio hand-written", best_t, "tasks/s");
    report.add_vs(
        "noop_full_path",
        "conveyor",
        best_c,
        "tasks/s",
        "tokio hand-written",
        best_c / best_t,
    );
    python_baselines(report, quick, best_c).await;
}

/// Python asyncio (best of 3, like the Rust subjects) and `ThreadPoolExecutor` (one run: it is slow),
/// each with conveyor's ratio to it; skipped with a note without `python3`.
async fn python_baselines(report: &mut Report, quick: bool, conveyor: f64) {
    let Some(version) = python::available() else {
        report.note("python3 not found on PATH: Python baselines skipped");
        return;
    };
    let runs = [
        (Baseline::Asyncio, if quick { 50_000 } else { 200_000 }, 3),
        (
            Baseline::ThreadPool,
            if quick { 20_000 } else { 100_000 },
            1,
        ),
    ];
    let mut sizes = Vec::new();
    for (baseline, n, repeat) in runs {
        let mut best: Option<f64> = None;
        for _ in 0..repeat {
            let result = tokio::task::spawn_blocking(move || python::run(baseline, n))
                .await
                .unwrap_or_else(|e| Err(format!("the python runner panicked: {e}")));
            match result {
                Ok(rate) => best = Some(best.map_or(rate, |b: f64| b.max(rate))),
                Err(e) => {
                    report.note(format!("{}: {e}", baseline.subject()));
                    break;
                }
            }
        }
        let Some(rate) = best else { continue };
        let subject = baseline.subject();
        sizes.push(format!("{subject}: {n} tasks"));
        report.add("noop_full_path", subject, rate, "tasks/s");
        report.add_vs(
            "noop_full_path",
            "conveyor",
            conveyor,
            "tasks/s",
            subject,
            conveyor / rate,
        );
    }
    report.note(format!("{version}; {}", sizes.join(", ")));
}
