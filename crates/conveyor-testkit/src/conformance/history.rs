//! Every attempt's history: the worker named at each reservation, the
//! reservation time as the start, the settlement (or the lease recovery)
//! as the end, and how each attempt ended. A backend that does not declare
//! [`Capabilities::history`](conveyor_core::Capabilities::history) must
//! read back an empty history instead.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::attempt::{ERROR_CHARS, HISTORY_LIMIT};
use conveyor_core::{
    AttemptOutcome, AttemptRecord, Clock, FinishAction, ManualClock, ReserveParams, TaskState,
};

use super::*;

/// Reserves one task for `worker` (waiting up to 10 s, as `reserve_until`).
async fn reserve_as(b: &Subject, worker: &str) -> Reserved {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let queues = default_queue();
    loop {
        let params = ReserveParams::new(&queues, 1, LEASE).worker(worker);
        let mut got = b.reserve(params).await.expect("reserve");
        if let Some(r) = got.pop() {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing to reserve for {worker}"
        );
        if !b.wait_for_work(&queues, Duration::from_millis(50)).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// False (after checking the history is empty) when the backend keeps none.
async fn keeps_history(b: &Subject, id: TaskId) -> bool {
    if b.capabilities().history {
        return true;
    }
    assert!(
        get(b, id).await.history.is_empty(),
        "a backend without history reads an empty one"
    );
    false
}

fn retry(error: &str) -> FinishAction {
    FinishAction::Retry {
        delay: Duration::ZERO,
        error: error.into(),
    }
}

/// Attempt numbers, workers and outcome labels of a history.
fn summary(h: &[AttemptRecord]) -> Vec<(u32, Option<&str>, &'static str, Option<&str>)> {
    h.iter()
        .map(|a| {
            (
                a.attempt,
                a.worker.as_deref(),
                a.outcome.label(),
                a.outcome.error(),
            )
        })
        .collect()
}

/// Each attempt ended before the next one started, and none ended before
/// it started.
fn assert_ordered(h: &[AttemptRecord]) {
    for a in h {
        if let Some(end) = a.ended_at {
            assert!(end >= a.started_at, "ends after it starts: {a:?}");
        }
    }
    for w in h.windows(2) {
        let end = w[0].ended_at.expect("an earlier attempt has ended");
        assert!(end <= w[1].started_at, "in order: {w:?}");
    }
}

/// A task that fails twice and then succeeds shows three attempts: the two
/// errors, the worker of each, ordered starts and ends; the running attempt
/// shows its worker while it runs.
pub async fn history_of_retries(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("h").max_attempts(3)).await;
    if !keeps_history(&b, id).await {
        return;
    }
    assert!(get(&b, id).await.history.is_empty(), "not started yet");
    let t0 = clock.now();
    let first = reserve_as(&b, "worker-1").await;
    let running = get(&b, id).await;
    let now = running.running_attempt().expect("a running attempt");
    assert_eq!(now.worker.as_deref(), Some("worker-1"));
    assert_eq!((now.attempt, now.started_at, now.ended_at), (1, t0, None));
    clock.advance(Duration::from_millis(10));
    report(&b, first.lease, retry("first failure"))
        .await
        .expect("retry");
    clock.advance(Duration::from_millis(10));
    let second = reserve_as(&b, "worker-2").await;
    clock.advance(Duration::from_millis(10));
    report(&b, second.lease, retry("second failure"))
        .await
        .expect("retry");
    clock.advance(Duration::from_millis(10));
    let third = reserve_as(&b, "worker-3").await;
    let rec = get(&b, id).await;
    assert_eq!(rec.history.len(), 3);
    assert_eq!(
        rec.running_attempt().and_then(|a| a.worker.as_deref()),
        Some("worker-3")
    );
    clock.advance(Duration::from_millis(10));
    complete(&b, third.lease).await;
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(
        summary(&rec.history),
        vec![
            (1, Some("worker-1"), "failed", Some("first failure")),
            (2, Some("worker-2"), "failed", Some("second failure")),
            (3, Some("worker-3"), "succeeded", None),
        ]
    );
    assert_ordered(&rec.history);
    assert_eq!(rec.history[0].started_at, t0);
    assert_eq!(
        rec.history[0].ended_at,
        Some(t0.plus(Duration::from_millis(10)))
    );
    assert_eq!(rec.history[2].ended_at, rec.finished_at);
    assert!(rec.running_attempt().is_none());

    // A task that succeeds at once, reserved with no worker named.
    let id = enqueue(&b, task("once")).await;
    let r = reserve_until(&b, 1, 1).await;
    complete(&b, r[0].lease.clone()).await;
    let rec = get(&b, id).await;
    assert_eq!(summary(&rec.history), vec![(1, None, "succeeded", None)]);
}

/// A lease that runs out shows "lease expired" for its attempt: once with
/// an attempt left (the next one runs), and on the last attempt (dead).
pub async fn history_shows_lease_expiry(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("lost").max_attempts(2)).await;
    if !keeps_history(&b, id).await {
        return;
    }
    reserve_as(&b, "killed").await;
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(b.recover_expired().await.expect("recover"), 1);
    let rec = get(&b, id).await;
    assert_eq!(
        summary(&rec.history),
        vec![(1, Some("killed"), "lease expired", None)]
    );
    assert_eq!(rec.history[0].outcome, AttemptOutcome::LeaseExpired);
    assert!(rec.history[0].ended_at.is_some());
    let again = reserve_as(&b, "survivor").await;
    complete(&b, again.lease).await;
    let rec = get(&b, id).await;
    assert_eq!(
        summary(&rec.history),
        vec![
            (1, Some("killed"), "lease expired", None),
            (2, Some("survivor"), "succeeded", None),
        ]
    );
    assert_ordered(&rec.history);

    let id = enqueue(&b, task("lost for good").max_attempts(1)).await;
    reserve_as(&b, "killed too").await;
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(b.recover_expired().await.expect("recover"), 1);
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Dead);
    assert_eq!(
        summary(&rec.history),
        vec![(1, Some("killed too"), "lease expired", None)]
    );
}

/// A dead task shows every attempt's error; a discard, a dead-letter and a
/// release show as such; a history keeps its latest attempts and clips
/// long errors.
pub async fn history_of_a_dead_task(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("doomed").max_attempts(3)).await;
    if !keeps_history(&b, id).await {
        return;
    }
    for n in 1..=3 {
        let r = reserve_as(&b, &format!("w{n}")).await;
        clock.advance(Duration::from_millis(5));
        report(&b, r.lease, retry(&format!("error {n}")))
            .await
            .expect("retry");
    }
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Dead);
    assert_eq!(
        summary(&rec.history),
        vec![
            (1, Some("w1"), "failed", Some("error 1")),
            (2, Some("w2"), "failed", Some("error 2")),
            (3, Some("w3"), "dead-lettered", Some("error 3")),
        ]
    );
    assert_ordered(&rec.history);

    let id = enqueue(&b, task("refused")).await;
    let r = reserve_as(&b, "w").await;
    let error = "x".repeat(ERROR_CHARS + 100);
    report(
        &b,
        r.lease,
        FinishAction::DeadLetter {
            error: error.clone(),
        },
    )
    .await
    .expect("dead-letter");
    let rec = get(&b, id).await;
    assert_eq!(
        rec.error.as_deref(),
        Some(error.as_str()),
        "the task keeps it all"
    );
    assert_eq!(rec.history.len(), 1);
    assert_eq!(rec.history[0].outcome.label(), "dead-lettered");
    assert_eq!(
        rec.history[0].outcome.error().map(str::len),
        Some(ERROR_CHARS),
        "the attempt keeps the first ERROR_CHARS characters"
    );

    let id = enqueue(&b, task("dropped")).await;
    let r = reserve_as(&b, "w").await;
    report(
        &b,
        r.lease,
        FinishAction::Discard {
            reason: "not needed".into(),
        },
    )
    .await
    .expect("discard");
    assert_eq!(
        summary(&get(&b, id).await.history),
        vec![(1, Some("w"), "discarded", Some("not needed"))]
    );

    // Releases do not count, so a task can be handed back without end: its
    // history keeps the latest ones.
    let id = enqueue(&b, task("handed back")).await;
    for n in 0..HISTORY_LIMIT + 2 {
        let r = reserve_as(&b, &format!("r{n}")).await;
        report(&b, r.lease, FinishAction::Release)
            .await
            .expect("release");
    }
    let rec = get(&b, id).await;
    assert_eq!(rec.history.len(), HISTORY_LIMIT);
    assert!(rec
        .history
        .iter()
        .all(|a| a.attempt == 1 && a.outcome == AttemptOutcome::Released));
    assert_eq!(
        rec.history[0].worker.as_deref(),
        Some("r2"),
        "the oldest go"
    );
    let last = format!("r{}", HISTORY_LIMIT + 1);
    assert_eq!(
        rec.history[HISTORY_LIMIT - 1].worker.as_deref(),
        Some(last.as_str())
    );
}
