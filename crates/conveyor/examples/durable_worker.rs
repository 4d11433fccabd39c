//! A durable worker: runs `add` tasks from the backend with 3 slots until
//! Ctrl-C (then drains gracefully).
//!
//! ```text
//! cargo run --release --example durable_worker            # terminal 1
//! cargo run --release --example durable_client            # terminal 2
//! ```
//! Both open `./conveyor.db` unless given a URL (or `CONVEYOR_URL`).

#[path = "shared/tasks.rs"]
mod tasks;

use conveyor::durable::{connect, Worker};

#[tokio::main]
async fn main() -> Result<(), conveyor::Error> {
    let url = tasks::backend_url();
    let backend = connect(&url).await?;
    let worker = Worker::builder(backend)
        .handler(tasks::add_handler())
        .slots(3)
        .on_task_complete(|r| {
            println!(
                "task {} attempt {}: {:?} {}",
                r.id,
                r.attempt,
                r.step,
                r.result
                    .output::<i64>()
                    .map(|v| format!("= {v}"))
                    .unwrap_or_default()
            )
        })
        .build()?;
    println!("worker on {url}: 3 slots; Ctrl-C to stop");
    let report = worker.run().await?;
    println!("stopped: {:?}", report.stats);
    Ok(())
}
