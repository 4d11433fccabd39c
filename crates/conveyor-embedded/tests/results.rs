//! Waiting for results: a task finished through any handle of this process
//! on the file wakes a waiter at once; a wait otherwise ends after the
//! results poll, so the caller reads again and sees what other processes
//! finished.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{Backend, ManualClock, TaskId};
use conveyor_embedded::{EmbeddedBackend, DEFAULT_RESULTS_POLL};

/// A waiter that would wait a minute between reads is woken by finishes made
/// through another handle (its own connection and database thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishes_through_another_handle_wake_a_waiter() {
    let f = common::Fixture::new();
    let waiter = EmbeddedBackend::open_with_clock(f.path(), f.clock.clone())
        .expect("open")
        .results_poll(Duration::from_secs(60));
    let waiter: Arc<dyn Backend> = Arc::new(waiter);
    let finisher: Arc<dyn Backend> = Arc::new(f.reopen());
    conveyor_testkit::conformance::result_waits(waiter, finisher, f.clock.clone()).await;
}

/// The same, finishing through the waiter's own handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishes_through_the_same_handle_wake_a_waiter() {
    let f = common::Fixture::new();
    let b = EmbeddedBackend::open_with_clock(f.path(), f.clock.clone())
        .expect("open")
        .results_poll(Duration::from_secs(60));
    let b: Arc<dyn Backend> = Arc::new(b);
    conveyor_testkit::conformance::result_waits(b.clone(), b, f.clock.clone()).await;
}

/// With nothing finishing here, a wait ends after the results poll (by
/// default 100 ms), so finishes by other processes are seen that soon.
#[tokio::test]
async fn a_wait_ends_after_the_results_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::default());
    let b = EmbeddedBackend::open_with_clock(dir.path().join("r.db"), clock).expect("open");
    let store = b.result_store().expect("a result store");
    let mark = store
        .finish_mark()
        .await
        .expect("the embedded store notifies");
    let t = Instant::now();
    let waited = store
        .wait_finished(TaskId(1), mark, Duration::from_secs(60))
        .await;
    assert!(waited, "it waited on the notification");
    let took = t.elapsed();
    assert!(took >= DEFAULT_RESULTS_POLL, "ended early: {took:?}");
    assert!(took < Duration::from_secs(10), "not bounded: {took:?}");
}
