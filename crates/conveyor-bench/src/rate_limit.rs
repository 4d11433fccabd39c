//! The rate limiter: a handler limited to `Rate::per_second(1000)` (burst 1) is
//! kept busy for a fixed window; how close is the achieved rate of starts to the
//! configured one, and how bursty are the starts?
//!
//! Each task returns the instant its handler began running (its start); the
//! job's callback collects them. Starts are counted in the half-open window
//! `[first start, first start + duration)`, so the run's edges do not matter;
//! the job is then cancelled. Burstiness is the largest number of starts in any
//! 100 ms window (ideal: 100).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::{Handler, Pool, Rate, TaskError};

use crate::report::Report;

const PER_SECOND: u32 = 1_000;
const WINDOW: Duration = Duration::from_millis(100);

/// Starts of one run, sorted.
async fn collect_starts(duration: Duration) -> Vec<Instant> {
    let pool = Pool::new().expect("pool");
    let limited = Handler::io("limited", |_: (), _ctx| async move {
        Ok::<_, TaskError>(Instant::now())
    })
    .rate(Rate::per_second(PER_SECOND));
    let starts = Arc::new(Mutex::new(Vec::new()));
    let sink = starts.clone();
    let job = pool
        .job()
        .on_task_complete(move |r| {
            if let (Some(at), Ok(mut all)) = (r.output::<Instant>(), sink.lock()) {
                all.push(*at);
            }
        })
        .start()
        .expect("job");
    let producer = job.producer().expect("open job");
    // The producer keeps the queue full until the job is cancelled.
    let feeder = tokio::spawn(async move { while producer.submit(&limited, ()).await.is_ok() {} });
    // Run past the window by a margin so the window is full of starts.
    tokio::time::sleep(duration + Duration::from_millis(300)).await;
    job.cancel();
    let _ = feeder.await;
    job.await;
    let mut starts = std::mem::take(&mut *starts.lock().expect("starts"));
    starts.sort();
    starts
}

/// The most starts in any window of `width`.
fn max_in_window(starts: &[Instant], width: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..starts.len() {
        while starts[hi].duration_since(starts[lo]) >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Measures and reports the achieved rate and the 100 ms burst maximum.
pub async fn run(report: &mut Report, quick: bool) {
    let duration = Duration::from_secs(if quick { 2 } else { 10 });
    let starts = collect_starts(duration).await;
    let Some(&first) = starts.first() else {
        report.note("rate_limit: no task started");
        return;
    };
    let in_window: Vec<Instant> = starts
        .iter()
        .copied()
        .take_while(|t| t.duration_since(first) < duration)
        .collect();
    let achieved = in_window.len() as f64 / duration.as_secs_f64();
    let bench = format!("rate_limit 1000/s {}s", duration.as_secs());
    report.add(&bench, "configured", f64::from(PER_SECOND), "starts/s");
    report.add_vs(
        &bench,
        "achieved",
        achieved,
        "starts/s",
        "configured",
        achieved / f64::from(PER_SECOND),
    );
    let ideal = f64::from(PER_SECOND) * WINDOW.as_secs_f64();
    let burst = max_in_window(&in_window, WINDOW) as f64;
    report.add(&bench, "ideal starts per 100ms", ideal, "starts");
    report.add_vs(
        &bench,
        "max starts in any 100ms",
        burst,
        "starts",
        "ideal per 100ms",
        burst / ideal,
    );
}
