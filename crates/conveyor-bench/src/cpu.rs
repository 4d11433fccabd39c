//! CPU-heavy work: the cpu lane's speed-up over one thread, and how responsive
//! the async runtime stays meanwhile.
//!
//! `TASKS` busy loops of about 50 ms each run (1) sequentially on one thread,
//! (2) through a `Handler::cpu` on a pool whose cpu lane has one thread per core,
//! and (3) inline on the runtime inside `Handler::io` handlers — the mistake the
//! cpu lane exists to prevent. A 1 ms ticker (see [`crate::ticker`]) measures
//! the runtime's lateness while the runtime is idle, during (2) and during (3).

use std::hint::black_box;
use std::time::{Duration, Instant};

use conveyor::{available_cores, Handler, Pool, TaskError};

use crate::report::Report;
use crate::ticker::{self, Lateness};

/// CPU tasks per run.
const TASKS: u64 = 16;
/// The target duration of one task.
const TASK_TIME: Duration = Duration::from_millis(50);

/// A busy loop of `iters` rounds the optimiser cannot remove. Never inlined:
/// calibration and every subject run this one copy of its machine code. An
/// inlined copy per call site is placed differently in each build, and a loop
/// this tight runs up to 1.7x slower in one place than in another (measured:
/// the same engine's cpu lane at 1.1-1.9x from build to build).
#[inline(never)]
fn spin(iters: u64) -> u64 {
    let mut x = black_box(0x9E37_79B9_7F4A_7C15_u64);
    for i in 0..iters {
        x = black_box(x.rotate_left(5) ^ i).wrapping_mul(0x0100_0000_01B3);
    }
    x
}

/// Iterations of [`spin`] that take about [`TASK_TIME`] on this machine (the
/// fastest of five timed samples, so other load on the machine inflates it less).
fn calibrate() -> u64 {
    const SAMPLE: u64 = 2_000_000;
    black_box(spin(SAMPLE));
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            black_box(spin(SAMPLE));
            start.elapsed()
        })
        .min()
        .unwrap_or(TASK_TIME);
    (SAMPLE as f64 * TASK_TIME.as_secs_f64() / best.as_secs_f64().max(1e-9)) as u64
}

/// All tasks one after another on one thread (off the runtime).
async fn sequential(iters: u64) -> Duration {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        for _ in 0..TASKS {
            black_box(spin(iters));
        }
        start.elapsed()
    })
    .await
    .expect("sequential run")
}

/// All tasks submitted to one job on `pool` through `handler`; the wall time.
async fn through(pool: &Pool, handler: &Handler<u64, u64>, iters: u64) -> Duration {
    let start = Instant::now();
    let job = pool.job().start().expect("job");
    for _ in 0..TASKS {
        if job.submit(handler, iters).await.is_err() {
            break;
        }
    }
    let summary = job.await;
    assert_eq!(summary.succeeded, TASKS);
    start.elapsed()
}

/// Measures and reports everything above: `rounds` interleaved rounds of
/// (sequential, idle ticker, cpu lane, inline); wall times are the best round's,
/// ticker percentiles are over the ticks of all rounds.
pub async fn run(report: &mut Report, quick: bool) {
    let rounds = if quick { 1 } else { 3 };
    let cores = available_cores();
    let iters = tokio::task::spawn_blocking(calibrate)
        .await
        .expect("calibration");
    let pool = Pool::builder().cpu_threads(cores).build().expect("pool");
    let on_lane = Handler::cpu("spin", |iters: u64, _ctx| Ok::<_, TaskError>(spin(iters)));
    let inline = Handler::io("spin-inline", |iters: u64, _ctx| async move {
        Ok::<_, TaskError>(spin(iters))
    });
    // Warm the pool (and its threads) with one short round.
    through(&pool, &on_lane, iters / 50).await;

    let (mut seq, mut lane_wall, mut inline_wall) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut idle, mut lane, mut inlined) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        seq = seq.min(sequential(iters).await);
        let (_, ticks) = ticker::during(tokio::time::sleep(TASK_TIME * 10)).await;
        idle.extend(ticks);
        let (wall, ticks) = ticker::during(through(&pool, &on_lane, iters)).await;
        lane_wall = lane_wall.min(wall);
        lane.extend(ticks);
        let (wall, ticks) = ticker::during(through(&pool, &inline, iters)).await;
        inline_wall = inline_wall.min(wall);
        inlined.extend(ticks);
    }

    let bench = format!("cpu_lane {TASKS}x50ms {cores}c");
    let best = if rounds > 1 { ", best" } else { "" };
    report.add(
        &bench,
        &format!("sequential, one thread{best}"),
        ms(seq),
        "ms",
    );
    report.add_vs(
        &bench,
        &format!("cpu lane, {cores} threads{best}"),
        ms(lane_wall),
        "ms",
        "sequential (speed-up)",
        seq.as_secs_f64() / lane_wall.as_secs_f64(),
    );
    report.add_vs(
        &bench,
        &format!("inline in io handlers{best}"),
        ms(inline_wall),
        "ms",
        "sequential (speed-up)",
        seq.as_secs_f64() / inline_wall.as_secs_f64(),
    );
    let idle = ticker::summarise(idle);
    add_lateness(report, "idle", idle, None);
    add_lateness(report, "cpu lane busy", ticker::summarise(lane), Some(idle));
    add_lateness(
        report,
        "inline on runtime",
        ticker::summarise(inlined),
        Some(idle),
    );
}

/// Reports one situation's ticker lateness; with an idle baseline, p99 also as a
/// ratio to idle and as a difference from idle (the target is "within 1 ms").
fn add_lateness(report: &mut Report, situation: &str, l: Lateness, idle: Option<Lateness>) {
    let bench = "ticker_1ms_lateness";
    report.add(bench, &format!("{situation} p50"), l.p50, "ms");
    if let Some(idle) = idle {
        report.add_vs(
            bench,
            &format!("{situation} p99"),
            l.p99,
            "ms",
            "idle p99",
            l.p99 / idle.p99.max(1e-6),
        );
        report.add(
            bench,
            &format!("{situation} p99 - idle p99"),
            l.p99 - idle.p99,
            "ms",
        );
    } else {
        report.add(bench, &format!("{situation} p99"), l.p99, "ms");
    }
    report.add(bench, &format!("{situation} max"), l.max, "ms");
    report.add(
        bench,
        &format!("{situation} ticks"),
        l.ticks as f64,
        "ticks",
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
