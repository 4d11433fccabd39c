//! Sleep-bound work: tasks that only wait (`tokio::time::sleep(10ms)`), so the
//! wall time should be the number of waves times one sleep.
//!
//! The ideal is `ceil(tasks / workers)` × the measured duration of one tokio
//! 10 ms sleep (tokio's timer rounds up to its 1 ms tick, so a "10 ms" sleep
//! lasts a little longer); the ratio wall / ideal shows what the engine adds.
//! A floor runs beside it: `workers` bare tokio tasks taking task numbers from
//! a shared counter and sleeping (no queue, no results), which shows what the
//! runtime's timer and the machine's load allow at all: when a wave's wake-ups
//! take longer than the 1 ms tick, the next sleeps round up one tick later.
//! With 1,000 workers, bare tokio tasks that also spin 0.5 µs and 2 µs per task
//! show how sensitive that shape is to any per-task CPU time at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::{Handler, Pool, TaskError};

use crate::report::Report;

const SLEEP: Duration = Duration::from_millis(10);

/// The mean duration of one tokio `sleep(10ms)` over `samples` sequential sleeps.
pub async fn measure_sleep(samples: u32) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..samples {
        let start = Instant::now();
        tokio::time::sleep(SLEEP).await;
        total += start.elapsed();
    }
    total / samples
}

/// Runs `tasks` sleeping tasks on a pool of `workers`; returns the wall time from
/// the first submission to the job's summary.
pub async fn run_once(tasks: usize, workers: usize) -> Duration {
    let pool = Pool::builder().workers(workers).build().expect("pool");
    let sleep = Handler::io("sleep", |_: (), _ctx| async move {
        tokio::time::sleep(SLEEP).await;
        Ok::<_, TaskError>(())
    });
    let start = Instant::now();
    let job = pool.job().queue_capacity(tasks).start().expect("job");
    for _ in 0..tasks {
        if job.submit(&sleep, ()).await.is_err() {
            break;
        }
    }
    let summary = job.await;
    let wall = start.elapsed();
    assert_eq!(summary.succeeded, tasks as u64);
    wall
}

/// The floor: `workers` bare tokio tasks sleeping `tasks` times in all.
pub async fn tokio_floor(tasks: usize, workers: usize) -> Duration {
    tokio_floor_with(tasks, workers, Duration::ZERO).await
}

/// Like [`tokio_floor`], each task first busy for `work` (spinning, as
/// bookkeeping would be): how sensitive the wall is to per-task CPU time.
pub async fn tokio_floor_with(tasks: usize, workers: usize, work: Duration) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < tasks {
                    if !work.is_zero() {
                        let busy = Instant::now();
                        while busy.elapsed() < work {
                            std::hint::spin_loop();
                        }
                    }
                    tokio::time::sleep(SLEEP).await;
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.await;
    }
    start.elapsed()
}

/// Both shapes (2,000 tasks × 50 workers, 10,000 tasks × 1,000 workers), each the
/// median of `runs` runs, against the ideal.
pub async fn run(report: &mut Report, quick: bool) {
    let runs = if quick { 3 } else { 5 };
    let one = measure_sleep(20).await;
    report.add(
        "sleep_bound",
        "one tokio sleep(10ms), mean of 20",
        ms(one),
        "ms",
    );
    for (tasks, workers) in [(2_000, 50), (10_000, 1_000)] {
        // With many workers, also bare tokio tasks that each spend a little
        // CPU time per task: how much any per-task bookkeeping costs here.
        let works: &[u64] = if workers >= 1_000 { &[500, 2_000] } else { &[] };
        let mut walls = Vec::with_capacity(runs);
        let mut floors = Vec::with_capacity(runs);
        let mut worked = vec![Vec::with_capacity(runs); works.len()];
        for _ in 0..runs {
            floors.push(tokio_floor(tasks, workers).await);
            walls.push(run_once(tasks, workers).await);
            for (&ns, walls) in works.iter().zip(&mut worked) {
                walls.push(tokio_floor_with(tasks, workers, Duration::from_nanos(ns)).await);
            }
        }
        let wall = median(walls);
        let floor = median(floors);
        let ideal = one * tasks.div_ceil(workers) as u32;
        let bench = format!("sleep_bound {tasks}x{workers}w");
        report.add(&bench, "ideal (waves x one sleep)", ms(ideal), "ms");
        report.add_vs(
            &bench,
            &format!("bare tokio tasks floor, median of {runs}"),
            ms(floor),
            "ms",
            "ideal",
            floor.as_secs_f64() / ideal.as_secs_f64(),
        );
        for (&ns, walls) in works.iter().zip(worked) {
            let wall = median(walls);
            report.add_vs(
                &bench,
                &format!("bare tokio + {ns} ns/task, median of {runs}"),
                ms(wall),
                "ms",
                "ideal",
                wall.as_secs_f64() / ideal.as_secs_f64(),
            );
        }
        report.add_vs(
            &bench,
            &format!("conveyor wall, median of {runs}"),
            ms(wall),
            "ms",
            "ideal",
            wall.as_secs_f64() / ideal.as_secs_f64(),
        );
        report.add_vs(
            &bench,
            &format!("conveyor wall, median of {runs}"),
            ms(wall),
            "ms",
            "bare tokio tasks floor",
            wall.as_secs_f64() / floor.as_secs_f64(),
        );
    }
}

/// The middle of `walls` (the upper one of an even count).
pub fn median(mut walls: Vec<Duration>) -> Duration {
    walls.sort();
    walls[walls.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
