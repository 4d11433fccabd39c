//! Global handler limits through the worker: several workers on one backend
//! together never run more of a limited handler than its global concurrency,
//! other handlers run freely beside it, and invalid limits are refused at
//! build time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::WorkerStopper;
use conveyor::durable::{Backend, HandlerLimits};
use conveyor::{
    Client, EnqueueOptions, Error, Handler, MemoryBackend, TaskError, TaskState, TaskType, Worker,
};

const SLOW: TaskType<u32, u32> = TaskType::new("slow");
const FREE: TaskType<u32, u32> = TaskType::new("free");

/// Counts tasks running now and the most ever seen at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

fn slow(gauge: Arc<Gauge>) -> Handler<u32, u32> {
    Handler::io("slow", move |n: u32, _ctx| {
        let gauge = gauge.clone();
        async move {
            let at = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
            gauge.max.fetch_max(at, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(15)).await;
            gauge.now.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, TaskError>(n)
        }
    })
}

fn free() -> Handler<u32, u32> {
    Handler::io("free", |n: u32, _ctx| async move { Ok::<_, TaskError>(n) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_a_global_concurrency_limit() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let gauge = Arc::new(Gauge::default());
    let mut stoppers: Vec<WorkerStopper> = Vec::new();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let w = Worker::builder(backend.clone())
            .handler(slow(gauge.clone()))
            .handler(free())
            .global_limits("slow", HandlerLimits::none().concurrency(2))
            .slots(10)
            .poll_interval(Duration::from_millis(5))
            .build()
            .expect("a valid worker");
        stoppers.push(w.stopper());
        runs.push(tokio::spawn(w.run_until(std::future::pending())));
    }
    let client = Client::new(backend.clone());
    let inputs: Vec<u32> = (0..30).collect();
    let slow_tasks = client
        .enqueue_many(&SLOW, &inputs, &EnqueueOptions::new())
        .await
        .expect("enqueue");
    let free_tasks = client
        .enqueue_many(&FREE, &inputs, &EnqueueOptions::new())
        .await
        .expect("enqueue");
    // Free tasks finish long before the limited backlog drains.
    for h in &free_tasks {
        h.wait_timeout(Duration::from_secs(10)).await.expect("free");
    }
    let last = slow_tasks.last().expect("tasks").id();
    let state = client
        .status(last)
        .await
        .expect("status")
        .expect("record")
        .state;
    assert_ne!(
        state,
        TaskState::Completed,
        "free tasks finished while the limited backlog (30 x 15 ms, 2 at once) still waited"
    );
    for h in &slow_tasks {
        h.wait_timeout(Duration::from_secs(20)).await.expect("slow");
    }
    assert_eq!(
        gauge.max.load(Ordering::SeqCst),
        2,
        "never more than 2 at once"
    );
    for s in &stoppers {
        s.stop();
    }
    for r in runs {
        r.await.expect("join").expect("run");
    }
}

#[test]
fn invalid_global_limits_are_refused() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let err = Worker::builder(backend)
        .handler(free())
        .global_limits("free", HandlerLimits::none().concurrency(0))
        .build()
        .expect_err("a zero limit is invalid");
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
}
