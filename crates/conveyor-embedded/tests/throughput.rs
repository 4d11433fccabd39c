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

use conveyor_core::{Backend, Finish, NewTask, ReserveParams};
use conveyor_embedded::EmbeddedBackend;

const BATCH: usize = 1000;
const LEASE: Duration = Duration::from_secs(60);

/// Whether scenario `name` runs (`CONVEYOR_BENCH_ONLY` picks one by number).
fn runs(name: &str) -> bool {
    std::env::var("CONVEYOR_BENCH_ONLY").map_or(true, |only| only == name)
}

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

/// CPU time this process used so far (Linux; zero elsewhere).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which ends with ')': utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks: u64 = fields.iter().sum();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn report(name: &str, tasks: usize, took: Duration, cpu: Duration) {
    println!(
        "{name:<58} {tasks:>8} in {:>7.3}s = {:>9.0}/s  (cpu {:>5.1} µs/task)",
        took.as_secs_f64(),
        tasks as f64 / took.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / tasks as f64
    );
}

fn completions(got: &[conveyor_core::Reserved]) -> Vec<Finish> {
    got.iter()
        .map(|r| Finish::complete(r.lease.clone()))
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
    println!(
        "file in {} (same disk as the project)",
        dir.path().display()
    );
    let q = vec!["default".to_string()];

    // 0. The disk's fsync latency right now, which bounds every commit.
    if runs("0") {
        use std::io::Write;
        let mut file = std::fs::File::create(dir.path().join("fsync.probe")).unwrap();
        let rounds = 100;
        let start = Instant::now();
        for _ in 0..rounds {
            file.write_all(&[0u8; 4096]).unwrap();
            file.sync_data().unwrap();
        }
        println!(
            "fsync (4 KiB append + fdatasync): {:.0} µs each",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
        );
    }

    // 1. enqueue_many of 1000, one caller.
    if runs("1") {
        let b = open(&dir, "enqueue.db");
        let (start, cpu) = (Instant::now(), cpu_time());
        for _ in 0..n / BATCH {
            b.enqueue_many(batch(BATCH)).await.unwrap();
        }
        report(
            "enqueue_many(1000), one caller",
            n,
            start.elapsed(),
            cpu_time() - cpu,
        );
    }

    // 2. enqueue_many of 1000, four concurrent callers (group commit).
    if runs("2") {
        let b = open(&dir, "enqueue4.db");
        let (start, cpu) = (Instant::now(), cpu_time());
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
        report(
            "enqueue_many(1000), four concurrent callers",
            n,
            start.elapsed(),
            cpu_time() - cpu,
        );
    }

    // 3. End to end, one loop: enqueue 1000 → reserve 1000 → finish 1000.
    if runs("3") {
        let b = open(&dir, "e2e.db");
        let (start, cpu) = (Instant::now(), cpu_time());
        let mut phases = [Duration::ZERO; 3];
        for _ in 0..n / BATCH {
            let t = Instant::now();
            b.enqueue_many(batch(BATCH)).await.unwrap();
            phases[0] += t.elapsed();
            let t = Instant::now();
            let got = b
                .reserve(ReserveParams::new(&q, BATCH, LEASE))
                .await
                .unwrap();
            assert_eq!(got.len(), BATCH);
            phases[1] += t.elapsed();
            let t = Instant::now();
            let reports = completions(&got);
            for r in b.finish(reports).await.unwrap() {
                r.unwrap();
            }
            phases[2] += t.elapsed();
        }
        report(
            "end to end, one loop (enqueue, reserve, finish by 1000)",
            n,
            start.elapsed(),
            cpu_time() - cpu,
        );
        println!(
            "    of which enqueue {:.3}s, reserve {:.3}s, finish {:.3}s",
            phases[0].as_secs_f64(),
            phases[1].as_secs_f64(),
            phases[2].as_secs_f64()
        );
    }

    // 4. End to end, pipelined: one producer, two workers, concurrently.
    if runs("4") {
        let b = open(&dir, "pipelined.db");
        let (start, cpu) = (Instant::now(), cpu_time());
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
                    let got = b
                        .reserve(ReserveParams::new(&q, BATCH, LEASE))
                        .await
                        .unwrap();
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
        report(
            "end to end, pipelined (1 producer, 2 workers, by 1000)",
            n,
            start.elapsed(),
            cpu_time() - cpu,
        );
    }

    // 5. One task per call: sequential (an fsync each) and 256 callers at once
    //    (group commit shares the fsyncs).
    if runs("5") {
        let singles = (n / 20).max(1000);
        let b = open(&dir, "singles.db");
        let (start, cpu) = (Instant::now(), cpu_time());
        for _ in 0..singles / 10 {
            b.enqueue(NewTask::new("noop", b"{}".to_vec()))
                .await
                .unwrap();
        }
        report(
            "enqueue(1), one caller",
            singles / 10,
            start.elapsed(),
            cpu_time() - cpu,
        );
        let (start, cpu) = (Instant::now(), cpu_time());
        let mut hs = Vec::new();
        for _ in 0..256 {
            let b = b.clone();
            hs.push(tokio::spawn(async move {
                for _ in 0..singles / 256 {
                    b.enqueue(NewTask::new("noop", b"{}".to_vec()))
                        .await
                        .unwrap();
                }
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        report(
            "enqueue(1), 256 concurrent callers",
            singles / 256 * 256,
            start.elapsed(),
            cpu_time() - cpu,
        );
    }
}
