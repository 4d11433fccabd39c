//! Producer–consumer: three producers submit 1,000 simulated price look-ups into
//! one job on a pool of 50 workers.
//!
//! Shows: an `io`-lane handler, `job.producer()` clones used from async tasks,
//! `on_task_complete` / `on_job_complete` callbacks, and the `JobSummary`.
//!
//! Run: `cargo run --release -p conveyor --example producer_consumer`

use std::time::Duration;

use conveyor::{Handler, JobSummary, Pool, TaskError};

const PRODUCERS: u32 = 3;
const LOOKUPS: u32 = 1_000;

/// A tiny xorshift hash: a deterministic "random" number per SKU, so the example
/// needs no extra dependency.
fn xorshift(mut x: u32) -> u32 {
    x = x.wrapping_mul(0x9E37_79B9) | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 50 workers: at most 50 look-ups in flight at once.
    let pool = Pool::builder().workers(50).build()?;

    // The handler: a fake remote price service that answers in 5–50 ms.
    // Every 97th SKU is unknown: a permanent failure (no retry).
    let lookup = Handler::io("price_lookup", |sku: u32, _ctx| async move {
        let latency_ms = 5 + u64::from(xorshift(sku) % 46);
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        if sku.is_multiple_of(97) {
            return Err(TaskError::permanent(format!("unknown sku {sku}")));
        }
        let cents = 100 + xorshift(sku.rotate_left(7)) % 10_000;
        Ok(f64::from(cents) / 100.0)
    });

    // The job: callbacks run on the job's own result thread, never on a worker.
    let mut printed = 0;
    let job = pool
        .job()
        .on_task_complete(move |result| {
            // Print the first few results; the summary has the rest.
            if printed < 5 {
                printed += 1;
                match result.output::<f64>() {
                    Some(price) => println!("  task {:>4}: ${price:.2}", result.id.0),
                    None => println!("  task {:>4}: {:?}", result.id.0, result.outcome.kind()),
                }
            }
        })
        .on_job_complete(|summary: &JobSummary| {
            println!("on_job_complete: {} tasks have an outcome", summary.total());
        })
        .start()?;

    // Three producers, each with its own clone of the job's producer handle.
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let producer = job.producer().ok_or("the job is already closed")?;
        let lookup = lookup.clone();
        producers.push(tokio::spawn(async move {
            // Producer p submits SKUs p, p+3, p+6, ...
            for sku in (p..LOOKUPS).step_by(PRODUCERS as usize) {
                // `submit` waits while the job's queue is full (backpressure).
                producer.submit(&lookup, sku).await.map_err(|r| r.reason)?;
            }
            Ok::<_, conveyor::Error>(())
            // The producer clone is dropped here.
        }));
    }
    println!("first results:");
    for handle in producers {
        handle.await??;
    }

    // Awaiting the job closes its own producer and waits for every outcome.
    let summary = job.await;
    println!();
    println!(
        "tasks: {} total, {} succeeded, {} failed, {} cancelled, {} timed out, {} panicked",
        summary.total(),
        summary.succeeded,
        summary.failed,
        summary.cancelled,
        summary.timed_out,
        summary.panicked
    );
    if summary.failed > 0 {
        println!(
            "  (the failures are on purpose: every 97th SKU is unknown to the fake price \
             service, a permanent error that is not retried)"
        );
    }
    // Latency counts the wait in the queue: producers run ahead of the workers.
    println!(
        "latency (submit to outcome): p50 {:?}, p99 {:?}, max {:?}",
        summary.latency.p50, summary.latency.p99, summary.latency.max
    );
    println!(
        "run time per task:           p50 {:?}, p99 {:?}",
        summary.run_time.p50, summary.run_time.p99
    );
    println!(
        "SUMMARY: {} look-ups by {PRODUCERS} producers on 50 workers in {:.2?} = {:.0} tasks/s",
        summary.total(),
        summary.wall,
        summary.throughput()
    );
    Ok(())
}
