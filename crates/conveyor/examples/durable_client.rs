//! A durable client: enqueues three `add` tasks and waits for their results —
//! Celery's `delay()` and `get()`. With a worker of 3 slots running (see
//! `durable_worker`), the three 3-second tasks finish in about 3 s, not 9.
//!
//! ```text
//! cargo run --release --example durable_client [URL] [--with-worker]
//! ```
//! `--with-worker` starts the worker in this process too, so one command shows
//! the whole round trip.

#[path = "shared/tasks.rs"]
mod tasks;

use std::time::{Duration, Instant};

use conveyor::durable::{connect, Worker};
use conveyor::{Client, EnqueueOptions};

#[tokio::main]
async fn main() -> Result<(), conveyor::Error> {
    let with_worker = std::env::args().any(|a| a == "--with-worker");
    let url = if std::env::args()
        .nth(1)
        .is_some_and(|a| a != "--with-worker")
    {
        tasks::backend_url()
    } else {
        conveyor::durable::resolve_url(None)
    };
    let backend = connect(&url).await?;
    let worker = if with_worker {
        let w = Worker::builder(backend.clone())
            .handler(tasks::add_handler())
            .slots(3)
            .build()?;
        let stopper = w.stopper();
        Some((stopper, tokio::spawn(w.run_until(std::future::pending()))))
    } else {
        None
    };
    let client = Client::new(backend);
    let started = Instant::now();
    let handles = client
        .enqueue_many(
            &tasks::ADD,
            &[(1, 2), (20, 22), (100, 200)],
            &EnqueueOptions::new(),
        )
        .await?;
    println!(
        "enqueued tasks {:?} on {url}",
        handles.iter().map(|h| h.id().0).collect::<Vec<_>>()
    );
    for h in &handles {
        let sum = h.wait_timeout(Duration::from_secs(60)).await?;
        println!("task {} = {sum}", h.id());
    }
    println!(
        "3 tasks of 3 s each finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some((stopper, run)) = worker {
        stopper.stop();
        let _ = run.await;
    }
    Ok(())
}
