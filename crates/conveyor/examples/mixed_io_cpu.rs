//! Mixed I/O and CPU work in one job, and why the `cpu` lane exists.
//!
//! The same workload runs twice: 200 I/O tasks (a 10 ms sleep each) plus 40
//! CPU-heavy tasks (~20 ms of hashing each), all submitted to one job.
//!
//! 1. **cpu lane**: the hashing runs in a `Handler::cpu`, on the pool's own OS
//!    threads, so the async runtime stays free.
//! 2. **inline**: the same hashing runs inside a `Handler::io` future, on the
//!    runtime's threads, blocking them while it runs.
//!
//! Meanwhile a 1 ms `tokio::time::interval` ticker records how late each tick
//! fires: a stalled runtime shows up as late ticks (and slow I/O tasks).
//!
//! Run: `cargo run --release -p conveyor --example mixed_io_cpu`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::{Handler, Pool, TaskError};
use tokio::time::MissedTickBehavior;

const IO_TASKS: u64 = 200;
const CPU_TASKS: u64 = 40;
const CPU_WORK: Duration = Duration::from_millis(20);

/// CPU-bound work: `rounds` rounds of an xorshift hash.
fn crunch(seed: u64, rounds: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// How many rounds of `crunch` take about `target` on this machine.
fn calibrate(target: Duration) -> u64 {
    let rounds = 1_000_000;
    let start = Instant::now();
    std::hint::black_box(crunch(std::hint::black_box(7), rounds));
    let took = start.elapsed().max(Duration::from_micros(1));
    (rounds as f64 * target.as_secs_f64() / took.as_secs_f64()) as u64
}

/// p50 / p99 / max of a set of durations.
fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    if v.is_empty() {
        return Default::default();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99), at(1.0))
}

/// What one run measured.
struct Run {
    wall: Duration,
    ticks: Vec<Duration>,
    io_run_time: Vec<Duration>,
}

/// Runs the mixed workload once with `cpu_handler` doing the CPU part, while a
/// 1 ms ticker measures the runtime's responsiveness.
async fn run(
    pool: &Pool,
    io: &Handler<u64, u64>,
    cpu_handler: &Handler<u64, u64>,
) -> Result<Run, Box<dyn std::error::Error>> {
    // The ticker: a plain tokio task, like any other async work in the program.
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut lateness = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let due = interval.tick().await;
                lateness.push(tokio::time::Instant::now().saturating_duration_since(due));
            }
            lateness
        }
    });

    // Collect the run time of every I/O task from the result callback.
    let (tx, rx) = std::sync::mpsc::channel();
    let io_name = io.name().to_string();
    let job = pool
        .job()
        .on_task_complete(move |r| {
            if *r.handler == *io_name {
                if let Some(started) = r.started_at {
                    let _ = tx.send(r.finished_at.saturating_duration_since(started));
                }
            }
        })
        .start()?;

    // Interleave the two kinds of task, as a real mixed workload would.
    let per_cpu = IO_TASKS / CPU_TASKS;
    for i in 0..IO_TASKS {
        job.submit(io, i).await.map_err(|r| r.reason)?;
        if i % per_cpu == 0 {
            job.submit(cpu_handler, i).await.map_err(|r| r.reason)?;
        }
    }
    let summary = job.await;
    stop.store(true, Ordering::Relaxed);
    let ticks = ticker.await?;

    if summary.succeeded != summary.total() {
        return Err(format!("some tasks did not succeed: {summary:?}").into());
    }
    Ok(Run {
        wall: summary.wall,
        ticks,
        io_run_time: rx.try_iter().collect(),
    })
}

/// Prints one run; returns the ticker's p99 lateness.
fn report(label: &str, run: Run) -> Duration {
    let ticks = run.ticks.len();
    let (t50, t99, tmax) = percentiles(run.ticks);
    let (io50, io99, _) = percentiles(run.io_run_time);
    println!("{label} (wall {:.2?})", run.wall);
    println!("  1 ms ticker lateness: p50 {t50:>9.2?}  p99 {t99:>9.2?}  max {tmax:>9.2?}  ({ticks} ticks)");
    println!("  10 ms io task time:   p50 {io50:>9.2?}  p99 {io99:>9.2?}");
    t99
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds = calibrate(CPU_WORK);
    let pool = Pool::new()?;
    println!(
        "{IO_TASKS} io tasks (10 ms sleep) + {CPU_TASKS} cpu tasks (~{CPU_WORK:?} of hashing), \
         {} cpu-lane threads\n",
        pool.config().cpu
    );

    // I/O: an async sleep, standing in for a network call.
    let io = Handler::io("fetch", |n: u64, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, TaskError>(n)
    });

    // 1. CPU work in the cpu lane: runs on conveyor's own threads.
    let hash_in_cpu_lane = Handler::cpu("hash", move |n: u64, ctx| {
        if ctx.is_cancelled() {
            return Err(TaskError::permanent("cancelled"));
        }
        Ok(crunch(n, rounds))
    });
    let lane_p99 = report(
        "cpu work in the cpu lane",
        run(&pool, &io, &hash_in_cpu_lane).await?,
    );

    // 2. The same CPU work inline in an io-lane future: blocks the runtime.
    let hash_inline = Handler::io("hash_inline", move |n: u64, _ctx| async move {
        Ok::<_, TaskError>(crunch(n, rounds))
    });
    let inline_p99 = report(
        "cpu work inline on the runtime",
        run(&pool, &io, &hash_inline).await?,
    );

    // About 1 ms of lateness is tokio's timer resolution; more is a stalled runtime.
    println!(
        "\nSUMMARY: ticker p99 lateness {lane_p99:.2?} with the cpu lane vs {inline_p99:.2?} inline"
    );
    Ok(())
}
