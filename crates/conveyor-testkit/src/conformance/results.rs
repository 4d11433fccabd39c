//! Waiting for results: a store that gives a finish mark wakes
//! `wait_finished` when the task finishes (completed, dead, cancelled, dead
//! by lease expiry), also when the finish lands between the caller's read
//! and its wait. Each check lets the wait run for a minute and gives it five
//! seconds: returning in time means a notification woke it, not the timeout.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{FinishAction, ManualClock, ResultStore, TaskId, TaskState};
use tokio::time::Instant;

use super::*;

/// How long each wait would run on its own.
const LONG: Duration = Duration::from_secs(60);
/// How soon a notified wait must return.
const BOUND: Duration = Duration::from_secs(5);

/// The conformance case: [`result_waits`] with one handle finishing and
/// waiting.
pub async fn finish_wakes_result_waiters(b: Subject, clock: Arc<ManualClock>) {
    result_waits(b.clone(), b, clock).await;
}

/// `waiter`'s result store is woken by finishes made through `finisher` (the
/// same backend, or another handle on the same namespace: another connection,
/// another handle on the file). Both read `clock`. A store that cannot notify
/// must say so: no mark, and `wait_finished` returning `false` at once.
pub async fn result_waits(waiter: Subject, finisher: Subject, clock: Arc<ManualClock>) {
    let store = waiter.result_store().expect("a result store");
    let Some(_) = store.finish_mark().await else {
        let t = Instant::now();
        let mark = conveyor_core::FinishMark::new(0);
        assert!(
            !store.wait_finished(TaskId(1), mark, LONG).await,
            "a store without finish marks cannot wait on them"
        );
        assert!(t.elapsed() < BOUND, "…and says so at once");
        return;
    };
    settle(store).await;

    // A waiter already waiting is woken by a completion.
    let id = enqueue(&finisher, task("waited")).await;
    let mark = store.finish_mark().await.expect("a mark");
    assert!(!state(&waiter, id).await.is_finished());
    let lease = reserve(&finisher, 1).await[0].lease.clone();
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let store = waiter.result_store().expect("a result store");
            tokio::time::timeout(BOUND, store.wait_finished(id, mark, LONG)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    complete(&finisher, lease).await;
    let woke = waiting.await.expect("the waiter ran");
    assert_eq!(woke, Ok(true), "a completion wakes the waiter");
    assert_eq!(state(&waiter, id).await, TaskState::Completed);

    // A finish between the read and the wait is not lost: the wait starts
    // after the notification was heard, and the mark taken before the read
    // makes it return at once.
    let id = enqueue(&finisher, task("raced")).await;
    let lease = reserve(&finisher, 1).await[0].lease.clone();
    let mark = store.finish_mark().await.expect("a mark");
    assert_eq!(state(&waiter, id).await, TaskState::Running);
    let reported = report(
        &finisher,
        lease,
        FinishAction::DeadLetter { error: "no".into() },
    )
    .await;
    reported.expect("dead-letter");
    tokio::time::sleep(Duration::from_millis(200)).await;
    woken(
        store,
        id,
        mark,
        "a dead-letter between the read and the wait",
    )
    .await;
    assert_eq!(state(&waiter, id).await, TaskState::Dead);

    // Cancelling a waiting task finishes it too (where tasks can be
    // cancelled: a broker's administration part may refuse to).
    if finisher.administration().is_ok() {
        let id = enqueue(&finisher, task("cancelled")).await;
        let mark = store.finish_mark().await.expect("a mark");
        match finisher.cancel(id).await {
            Err(conveyor_core::Error::Unsupported(_)) => {}
            cancelled => {
                assert_eq!(cancelled.expect("cancel"), TaskState::Cancelled);
                woken(store, id, mark, "a cancel").await;
            }
        }
    }

    // So does a lease running out on the last attempt.
    if finisher.maintenance().is_ok() {
        let t = task("expired").max_attempts(1);
        let id = enqueue(&finisher, t).await;
        let mark = store.finish_mark().await.expect("a mark");
        assert_eq!(ids(&reserve(&finisher, 1).await), vec![id]);
        clock.advance(LEASE + Duration::from_secs(1));
        assert_eq!(finisher.recover_expired().await.expect("recover"), 1);
        woken(store, id, mark, "a last-attempt lease expiry").await;
        assert_eq!(state(&waiter, id).await, TaskState::Dead);
    }
}

/// `wait_finished(id, mark)` returns within [`BOUND`] of a [`LONG`] wait.
async fn woken(store: &dyn ResultStore, id: TaskId, mark: conveyor_core::FinishMark, what: &str) {
    let waited = tokio::time::timeout(BOUND, store.wait_finished(id, mark, LONG)).await;
    assert_eq!(waited, Ok(true), "{what} wakes the waiter");
}

/// Waits until the store's listener, if it has one, is up and quiet: until a
/// wait on a task nobody finishes is not cut short at once (a listener
/// posts "something may have finished" when it connects).
async fn settle(store: &dyn ResultStore) {
    for _ in 0..100 {
        let mark = store.finish_mark().await.expect("a mark");
        let t = Instant::now();
        store
            .wait_finished(TaskId(u64::MAX), mark, Duration::from_millis(300))
            .await;
        if t.elapsed() >= Duration::from_millis(50) {
            return;
        }
    }
    panic!("wait_finished keeps waking while nothing finishes");
}
