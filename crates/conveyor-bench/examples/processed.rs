//! One processed measurement on its own, for profiling: enqueues `tasks`
//! no-op tasks on the backend at `url` (in batches of 1,000) and processes
//! them with a worker of `slots` slots, with Prometheus metrics counting its
//! events when the fourth argument is `metrics`.
//! `processed URL [slots] [tasks] [metrics]`. It prints the rate and the
//! process's CPU time per task while the worker processed them (user and
//! system, every thread: enqueueing them first is not counted). On
//! Redis the tasks live under a key prefix of their own, cleared afterwards;
//! any other backend is used as the URL names it (give a fresh embedded
//! file, or a fresh namespace).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[path = "../src/cpu_time.rs"]
mod cpu_time;

use conveyor::durable::{Backend, NewTask, RedisBackend, Worker};
use conveyor::{Handler, SystemClock, TaskError};
use tokio::sync::Notify;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: processed URL [slots] [tasks] [metrics]")?;
    let slots: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let metrics_on = args.next().is_some_and(|a| a == "metrics");
    let (backend, redis): (Arc<dyn Backend>, _) = if url.starts_with("redis") {
        let prefix = format!("conveyor-processed-{}:", std::process::id());
        let redis = RedisBackend::connect_with(&url, &prefix, Arc::new(SystemClock)).await?;
        (Arc::new(redis.clone()), Some(redis))
    } else {
        (conveyor::durable::connect(&url).await?, None)
    };
    for chunk in 0..n / 1000 {
        let tasks = (0..1000)
            .map(|i| NewTask::new("noop", (chunk * 1000 + i).to_string().into_bytes()))
            .collect();
        backend.enqueue_many(tasks).await?;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let (d, a) = (done.clone(), all.clone());
    let noop = Handler::io("noop", |_: u64, _ctx| async { Ok::<_, TaskError>(()) });
    let worker = Worker::builder(backend.clone())
        .handler(noop)
        .slots(slots)
        .fetch_batch(slots.max(256))
        // Room for every result: the count below must see them all, even
        // when a profiler slows the callback's thread (a full queue drops).
        .callback_capacity(n)
        .on_task_complete(move |_| {
            if d.fetch_add(1, Ordering::Relaxed) + 1 == n {
                a.notify_one();
            }
        })
        .build()?;
    let metrics = metrics_on.then(|| conveyor::metrics::Metrics::for_worker(&worker));
    let stopper = worker.stopper();
    let cpu = cpu_time::own();
    let t = Instant::now();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    all.notified().await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let cpu_per_task = (cpu_time::own() - cpu) / n as f64 * 1e6;
    stopper.stop();
    let _ = run.await;
    if let Some(redis) = redis {
        redis.clear().await?;
    }
    let watched = if metrics.is_some() {
        ", metrics on"
    } else {
        ""
    };
    println!("{slots} slots{watched}: {rate:.0} tasks/s, {cpu_per_task:.2} µs CPU/task");
    Ok(())
}
