//! No wedge after an outage: a `Worker` is running tasks against a private
//! Redis or PostgreSQL server when the server is stopped mid-run and started
//! again on the same port and data; every task enqueued before the outage
//! finishes, and tasks enqueued after it finish too (the fetch loop is really
//! progressing, not just alive).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::durable::Backend;
use conveyor::durable::{connect, EnqueueOptions};
use conveyor::{Client, Handler, TaskError, TaskState, TaskType, Worker};
use conveyor_testkit::servers::{TempPostgres, TempRedis};

const WORK: TaskType<u64, u64> = TaskType::new("work");
const BEFORE: u64 = 600;
const AFTER: u64 = 100;

async fn completed(b: &Arc<dyn Backend>) -> Option<u64> {
    let stats = b.stats().await.ok()?;
    Some(stats.iter().map(|s| s.count(TaskState::Completed)).sum())
}

async fn wait_completed(b: &Arc<dyn Backend>, n: u64, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = completed(b).await;
        if got == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: the worker wedged: {got:?} of {n} tasks completed after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the scenario; `stop` and `start` take the server down and up.
async fn no_wedge(
    label: &str,
    url: &str,
    stop: impl FnOnce() + Send + 'static,
    start: impl FnOnce() + Send + 'static,
) {
    let backend = connect(url).await.expect("backend");
    let ran = Arc::new(AtomicU64::new(0));
    let counter = ran.clone();
    let work = Handler::io(WORK.name(), move |n: u64, _ctx| {
        let counter = counter.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            counter.fetch_add(1, Ordering::Relaxed);
            Ok::<_, TaskError>(n)
        }
    });
    let worker = Worker::builder(backend.clone())
        .handler(work)
        .slots(8)
        .lease(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(50))
        .maintenance(Duration::from_millis(200), Duration::from_secs(3600))
        .build()
        .expect("worker");
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    let client = Client::new(backend.clone());
    let inputs: Vec<u64> = (0..BEFORE).collect();
    client
        .enqueue_many(&WORK, &inputs, &EnqueueOptions::new().max_attempts(50))
        .await
        .expect("enqueue");
    // Mid-run: some done, most still waiting.
    while ran.load(Ordering::Relaxed) < BEFORE / 6 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at_stop = ran.load(Ordering::Relaxed);
    tokio::task::spawn_blocking(stop).await.expect("stop");
    // Down longer than a lease: reserves, reports, renewals and wake-ups fail,
    // and leases taken before the outage run out.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let during = ran.load(Ordering::Relaxed);
    tokio::task::spawn_blocking(start).await.expect("start");
    wait_completed(&backend, BEFORE, label).await;

    let more: Vec<u64> = (BEFORE..BEFORE + AFTER).collect();
    client
        .enqueue_many(&WORK, &more, &EnqueueOptions::new())
        .await
        .expect("enqueue after the restart");
    wait_completed(&backend, BEFORE + AFTER, label).await;
    stopper.stop();
    let report = run.await.expect("join").expect("worker run");
    eprintln!(
        "{label}: {at_stop} ran before the stop, {during} by the end of the outage; \
         afterwards all {} completed; worker stats {:?}",
        BEFORE + AFTER,
        report.stats
    );
    assert!(report.drained, "{label}: the worker drained on stop");
    assert!(
        report.stats.backend_errors > 0,
        "{label}: the worker saw the outage"
    );
    assert!(report.stats.completed >= BEFORE + AFTER - report.stats.stale);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn redis_worker_resumes_after_a_server_restart() {
    let server = TempRedis::start();
    let url = server.url();
    let server = Arc::new(Mutex::new(server));
    let lock = |s: &Arc<Mutex<TempRedis>>| {
        let s = s.clone();
        move |f: fn(&mut TempRedis)| f(&mut s.lock().unwrap_or_else(|e| e.into_inner()))
    };
    let (stop, start) = (lock(&server), lock(&server));
    no_wedge(
        "redis",
        &url,
        move || stop(TempRedis::kill),
        move || start(TempRedis::restart),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postgres),
    ignore = "initdb and pg_ctl are not installed (Debian package postgresql)"
)]
async fn postgres_worker_resumes_after_a_server_restart() {
    let server = tokio::task::spawn_blocking(TempPostgres::start)
        .await
        .expect("start server");
    let server = Arc::new(server);
    let url = server.url();
    let (a, b) = (server.clone(), server.clone());
    no_wedge(
        "postgres",
        &url,
        move || a.stop_server(),
        move || b.start_server(),
    )
    .await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("clean up");
}
