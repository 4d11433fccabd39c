//! A three-stage pipeline: prepare → assemble → inspect.
//!
//! Each stage has its own handler (so its own lane) and its own concurrency, and
//! the stages are joined by bounded queues: a slow stage slows the ones before it
//! instead of growing memory. The inspect stage rejects some items; they are
//! counted and reported, and the pipeline goes on with the rest.
//!
//! Run: `cargo run --release -p conveyor --example pipeline`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::{Handler, Pipeline, Pool, TaskError};

const ORDERS: u32 = 500;

/// Parts cut for one order.
#[derive(Debug, Clone)]
struct Parts {
    order: u32,
    weight_g: u32,
}

/// An assembled widget.
#[derive(Debug, Clone)]
struct Widget {
    order: u32,
    weight_g: u32,
}

/// A widget that passed inspection.
#[derive(Debug, Clone)]
struct Passed {
    order: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new()?;

    // Stage 1 (cpu lane): compute the parts of an order.
    let prepare = Handler::cpu("prepare", |order: u32, _ctx| {
        let weight_g = (0..10_000u32).fold(order, |acc, i| acc.wrapping_mul(31).wrapping_add(i));
        Ok::<_, TaskError>(Parts {
            order,
            weight_g: 900 + weight_g % 200,
        })
    });

    // Stage 2 (io lane): wait for an assembly station (2 ms).
    let assemble = Handler::io("assemble", |parts: Parts, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, TaskError>(Widget {
            order: parts.order,
            weight_g: parts.weight_g,
        })
    });

    // Stage 3 (cpu lane): reject widgets that are too heavy. A failed item is
    // dropped from the pipeline; the others keep flowing.
    let inspect = Handler::cpu("inspect", |w: Widget, _ctx| {
        if w.weight_g > 1_080 {
            return Err(TaskError::permanent(format!(
                "order {}: {} g is over the limit",
                w.order, w.weight_g
            )));
        }
        Ok(Passed { order: w.order })
    });

    // Queues of 64 items between stages; 4 / 16 / 2 items in flight per stage.
    let rejected = Arc::new(AtomicU64::new(0));
    let mut pipeline = Pipeline::builder(&pool, 64)
        .stage(&prepare, 4)
        .stage(&assemble, 16)
        .stage(&inspect, 2)
        .on_failure({
            let rejected = rejected.clone();
            move |failure| {
                // Print the first few failures; count them all.
                if rejected.fetch_add(1, Ordering::Relaxed) < 3 {
                    let why = failure.error.map(|e| e.to_string()).unwrap_or_default();
                    println!(
                        "  stage {} ({}) {}: {why}",
                        failure.stage,
                        failure.handler,
                        failure.kind.as_str()
                    );
                }
            }
        })
        .build();

    // Feed the pipeline from a separate task, then close our own input handle so
    // the stages drain once the feeder is done.
    let input = pipeline.input().ok_or("the pipeline input is closed")?;
    let started = Instant::now();
    let feeder = tokio::spawn(async move {
        for order in 0..ORDERS {
            if input.send(order).await.is_err() {
                break; // The pipeline is gone.
            }
        }
    });
    pipeline.close_input();

    // Consume the last stage's output.
    println!("first rejections (on purpose: inspection rejects widgets over 1,080 g):");
    let mut passed = Vec::new();
    while let Some(item) = pipeline.recv().await {
        passed.push(item.order);
    }
    feeder.await?;
    let elapsed = started.elapsed();

    // Every stage has drained; collect their statistics.
    let stats = pipeline.finish().await;
    println!();
    println!(
        "{:<10} {:>8} {:>9} {:>6} {:>5} {:>10}",
        "stage", "received", "succeeded", "failed", "lost", "drained at"
    );
    for s in &stats {
        println!(
            "{:<10} {:>8} {:>9} {:>6} {:>5} {:>10.2?}",
            s.handler, s.received, s.succeeded, s.failed, s.lost, s.elapsed
        );
    }
    println!(
        "SUMMARY: {ORDERS} orders in, {} passed inspection, {} rejected, in {elapsed:.2?}",
        passed.len(),
        rejected.load(Ordering::Relaxed)
    );
    Ok(())
}
