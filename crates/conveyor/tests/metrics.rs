//! The metrics snapshot and tracing spans.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use std::time::Duration;

use conveyor::{Handler, Pool, RetryPolicy, TaskError};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_tracks_queue_lanes_outcomes_and_retries() {
    let pool = Pool::builder().workers(3).build().unwrap();
    let gate = std::sync::Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let held = Handler::io("held", move |_: u32, _ctx| {
        let g = g.clone();
        async move {
            let _p = g.acquire().await.map_err(TaskError::from)?;
            Ok::<_, TaskError>(())
        }
    });
    let flaky = Handler::io("flaky", |_: u32, _ctx| async move {
        Err::<(), _>(TaskError::new("x"))
    })
    .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(2)));
    let job = pool.job().start().unwrap();
    for i in 0..10 {
        job.submit(&held, i).await.unwrap();
    }
    let mut m = pool.metrics();
    for _ in 0..200 {
        m = pool.metrics();
        if m.in_flight_io == 3 && m.queued == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!((m.in_flight_io, m.in_flight_cpu, m.queued), (3, 0, 7));
    gate.add_permits(10);
    job.submit(&flaky, 0).await.unwrap();
    let s = job.await;
    assert_eq!((s.succeeded, s.failed, s.retries), (10, 1, 2));
    let m = pool.metrics();
    assert_eq!(
        (m.completed, m.succeeded, m.failed, m.retried),
        (11, 10, 1, 2)
    );
    assert_eq!((m.queued, m.in_flight()), (0, 0));
    assert_eq!(m.latency.count, 11);
    assert!(m.throughput > 0.0);
}
