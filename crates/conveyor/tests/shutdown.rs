//! Graceful and immediate shutdown (leaks when a pool is dropped: `pool_drop_leaks.rs`).

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::{Error, Handler, Pool, TaskError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_and_reports_what_never_started() {
    let pool = Pool::builder().workers(2).build().unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let h = Handler::io("work", move |_: u32, _ctx| {
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, TaskError>(())
        }
    });
    let job = pool.job().start().unwrap();
    for i in 0..10 {
        job.submit(&h, i).await.unwrap();
    }
    while pool.metrics().in_flight() < 2 {
        tokio::task::yield_now().await;
    }
    let report = pool.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.in_flight_at_start, 2);
    assert_eq!(report.not_started, 8);
    assert_eq!(report.cancelled_in_flight, 0);
    assert_eq!(
        finished.load(Ordering::SeqCst),
        2,
        "in-flight work finished"
    );
    let rejected = job.submit(&h, 99).await.unwrap_err();
    assert!(matches!(rejected.reason, Error::ShuttingDown));
    let s = job.await;
    assert_eq!((s.succeeded, s.cancelled), (2, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_cancels_what_outlives_the_grace_period() {
    let pool = Pool::builder().workers(4).build().unwrap();
    let h = Handler::io("forever", |_: u32, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, TaskError>(())
    });
    let job = pool.job().start().unwrap();
    for i in 0..3 {
        job.submit(&h, i).await.unwrap();
    }
    while pool.metrics().in_flight() < 3 {
        tokio::task::yield_now().await;
    }
    let report = pool.shutdown(Duration::from_millis(50)).await;
    assert_eq!(report.cancelled_in_flight, 3);
    assert_eq!(report.abandoned, 0);
    assert_eq!(job.await.cancelled, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_shutdown_cancels_everything() {
    let pool = Pool::builder().workers(2).build().unwrap();
    let h = Handler::io("forever", |_: u32, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, TaskError>(())
    });
    let job = pool.job().start().unwrap();
    for i in 0..6 {
        job.submit(&h, i).await.unwrap();
    }
    pool.shutdown_now();
    let s = tokio::time::timeout(Duration::from_secs(5), job.wait())
        .await
        .unwrap();
    assert_eq!(s.cancelled, 6);
}
