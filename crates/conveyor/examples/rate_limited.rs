//! A rate-limited handler: 200 calls to an API that allows 50 calls per second,
//! with bursts of up to 10.
//!
//! The limit is applied by the dispatcher before a task starts, so waiting calls
//! hold no worker and no thread. The first 10 calls start at once (the burst);
//! after that one call starts every 20 ms.
//!
//! Run: `cargo run --release -p conveyor --example rate_limited`

use std::time::Duration;

use conveyor::{Handler, Pool, Rate, TaskError};

const CALLS: u32 = 200;
const PER_SECOND: u32 = 50;
const BURST: u32 = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new()?;

    // A fake API call (2 ms), limited to 50 starts per second, bursts of 10.
    let call_api = Handler::io("call_api", |n: u32, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, TaskError>(n)
    })
    .rate(Rate::per_second(PER_SECOND).burst(BURST));

    // Record when each call started.
    let (tx, rx) = std::sync::mpsc::channel();
    let job = pool
        .job()
        .on_task_complete(move |r| {
            if let Some(started) = r.started_at {
                let _ = tx.send(started);
            }
        })
        .start()?;

    println!(
        "submitting {CALLS} calls limited to {PER_SECOND}/s with bursts of {BURST} \
         (expect about {:.1} s)...",
        f64::from(CALLS - BURST) / f64::from(PER_SECOND)
    );
    for n in 0..CALLS {
        job.submit(&call_api, n).await.map_err(|r| r.reason)?;
    }
    let summary = job.await;

    let mut starts: Vec<_> = rx.try_iter().collect();
    starts.sort_unstable();
    let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
        return Err("no call started".into());
    };
    let burst_end = starts[(BURST as usize - 1).min(starts.len() - 1)];
    let after_burst = starts.get(BURST as usize).copied().unwrap_or(last);

    // The burst: the first BURST calls start together.
    println!(
        "burst: the first {BURST} calls started within {:.2?}",
        burst_end.saturating_duration_since(first)
    );
    // After the burst: starts are spaced by the rate.
    let spaced = starts.len().saturating_sub(BURST as usize + 1) as f64;
    let span = last.saturating_duration_since(after_burst).as_secs_f64();
    let steady = if span > 0.0 { spaced / span } else { 0.0 };
    let overall = starts.len() as f64 / last.saturating_duration_since(first).as_secs_f64();
    println!("overall: {overall:.1} calls/s including the burst");
    println!(
        "SUMMARY: {} of {CALLS} calls succeeded in {:.2?}; rate after the burst {steady:.1} calls/s \
         (limit {PER_SECOND}/s)",
        summary.succeeded, summary.wall
    );
    Ok(())
}
