//! Retries, leases, fencing, release and cancel.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Error, FinishAction, ManualClock, ReserveParams, TaskState};

use conveyor_core::Clock;

use super::*;

/// A retried task waits for its delay, comes back with the next attempt, and is
/// dead-lettered (with its last error) when no attempt remains.
pub async fn retries_then_dead_letter(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("r").max_attempts(2)).await;
    let first = reserve(&b, 1).await;
    report(
        &b,
        first[0].lease.clone(),
        FinishAction::Retry {
            delay: Duration::from_secs(3),
            error: "boom 1".into(),
        },
    )
    .await
    .expect("retry");
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Retrying);
    assert_eq!(rec.error.as_deref(), Some("boom 1"));
    assert_eq!(rec.run_at, clock.now().plus(Duration::from_secs(3)));
    assert!(reserve(&b, 1).await.is_empty(), "waits for its backoff");
    clock.advance(Duration::from_secs(3));
    let second = reserve(&b, 1).await;
    assert_eq!(second[0].attempt, 2);
    assert_ne!(second[0].lease.token, first[0].lease.token);
    report(
        &b,
        second[0].lease.clone(),
        FinishAction::Retry {
            delay: Duration::from_secs(3),
            error: "boom 2".into(),
        },
    )
    .await
    .expect("retry");
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Dead, "no attempt left: dead");
    assert_eq!(rec.error.as_deref(), Some("boom 2"));
    assert_eq!(rec.attempts, 2);
    assert!(rec.finished_at.is_some());
}

/// A reserved task whose lease runs out becomes available again and is
/// redelivered with the next attempt number.
pub async fn lease_expiry_redelivers(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("x")).await;
    let got = b
        .reserve(ReserveParams::new(
            &default_queue(),
            1,
            Duration::from_secs(10),
        ))
        .await
        .expect("reserve");
    clock.advance(Duration::from_secs(9));
    assert_eq!(
        b.recover_expired().await.expect("recover"),
        0,
        "not expired yet"
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(b.recover_expired().await.expect("recover"), 1);
    assert_eq!(state(&b, id).await, TaskState::Available);
    let again = reserve(&b, 1).await;
    assert_eq!(ids(&again), vec![id]);
    assert_eq!(again[0].attempt, 2, "the lost attempt counts");
    assert_ne!(again[0].lease.token, got[0].lease.token);
}

/// A lease that runs out on the last attempt dead-letters the task.
pub async fn last_attempt_expiry_is_dead(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("x").max_attempts(1)).await;
    reserve(&b, 1).await;
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(b.recover_expired().await.expect("recover"), 1);
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Dead);
    assert!(rec.error.is_some(), "says why");
}

/// A worker whose lease ran out cannot report for a task another worker holds
/// now, nor renew it; reporting twice is refused too.
pub async fn fencing_refuses_stale_tokens(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("x")).await;
    let old = reserve(&b, 1).await[0].lease.clone();
    clock.advance(LEASE + Duration::from_secs(1));
    b.recover_expired().await.expect("recover");
    let new = reserve(&b, 1).await[0].lease.clone();
    let stale = report(&b, old.clone(), FinishAction::Complete { result: None }).await;
    assert!(stale.is_err(), "stale complete refused");
    let stale_retry = report(
        &b,
        old.clone(),
        FinishAction::Retry {
            delay: Duration::ZERO,
            error: "late".into(),
        },
    )
    .await;
    assert!(stale_retry.is_err(), "stale retry refused");
    assert_eq!(
        b.renew(&[old.clone(), new.clone()], LEASE)
            .await
            .expect("renew"),
        vec![false, true]
    );
    assert_eq!(state(&b, id).await, TaskState::Running);
    let results = b
        .finish(vec![
            conveyor_core::Finish::complete(new.clone()),
            conveyor_core::Finish::complete(old),
        ])
        .await
        .expect("finish");
    assert!(results[0].is_ok(), "the holder's report applies");
    assert!(matches!(results[1], Err(Error::StaleLease(t)) if t == id));
    assert!(
        report(&b, new, FinishAction::Complete { result: None })
            .await
            .is_err(),
        "a second report for a finished task is refused"
    );
    let unknown = conveyor_core::Lease::new(conveyor_core::TaskId(u64::MAX / 3), 1);
    assert!(report(&b, unknown, FinishAction::Release).await.is_err());
}

/// Renewing pushes the expiry out from now.
pub async fn renew_extends_leases(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("x")).await;
    let lease = b
        .reserve(ReserveParams::new(
            &default_queue(),
            1,
            Duration::from_secs(10),
        ))
        .await
        .expect("reserve")[0]
        .lease
        .clone();
    clock.advance(Duration::from_secs(8));
    assert_eq!(
        b.renew(&[lease], Duration::from_secs(10))
            .await
            .expect("renew"),
        vec![true]
    );
    clock.advance(Duration::from_secs(8));
    assert_eq!(b.recover_expired().await.expect("recover"), 0);
    assert_eq!(state(&b, id).await, TaskState::Running);
    clock.advance(Duration::from_secs(3));
    assert_eq!(b.recover_expired().await.expect("recover"), 1);
}

/// A released task is available again at once and its attempt is not counted.
pub async fn release_does_not_count_the_attempt(b: Subject, _clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("x").max_attempts(1)).await;
    let lease = reserve(&b, 1).await[0].lease.clone();
    report(&b, lease.clone(), FinishAction::Release)
        .await
        .expect("release");
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Available);
    assert_eq!(rec.attempts, 0);
    // (A broker hands a released task back asynchronously.)
    let again = reserve_until(&b, 1, 1).await;
    assert_eq!(again[0].attempt, 1);
    assert!(
        report(&b, lease, FinishAction::Release).await.is_err(),
        "the old lease is gone"
    );
}

/// Waiting tasks (available, scheduled, retrying) and running ones can be
/// cancelled and never run again; finished ones report their state instead.
pub async fn cancel_waiting_and_running_tasks(b: Subject, _clock: Arc<ManualClock>) {
    let avail = enqueue(&b, task("a")).await;
    let sched = enqueue(&b, task("s").delay(Duration::from_secs(60))).await;
    assert_eq!(b.cancel(avail).await.expect("cancel"), TaskState::Cancelled);
    assert_eq!(b.cancel(sched).await.expect("cancel"), TaskState::Cancelled);
    assert!(get(&b, sched).await.finished_at.is_some());
    assert_eq!(
        get(&b, sched).await.error,
        None,
        "a waiting task has no error"
    );
    let done = enqueue(&b, task("d")).await;
    let got = reserve(&b, 10).await;
    assert_eq!(ids(&got), vec![done], "cancelled tasks never run");
    complete(&b, got[0].lease.clone()).await;
    assert_eq!(b.cancel(done).await.expect("cancel"), TaskState::Completed);
    assert!(matches!(
        b.cancel(conveyor_core::TaskId(u64::MAX / 5)).await,
        Err(Error::NotFound(_))
    ));
    let retrying = enqueue(&b, task("y")).await;
    let l = reserve(&b, 1).await[0].lease.clone();
    report(
        &b,
        l,
        FinishAction::Retry {
            delay: Duration::from_secs(60),
            error: "e".into(),
        },
    )
    .await
    .expect("retry");
    assert_eq!(
        b.cancel(retrying).await.expect("cancel"),
        TaskState::Cancelled
    );
    assert_eq!(
        b.cancel(retrying).await.expect("cancel"),
        TaskState::Cancelled,
        "cancelling again changes nothing"
    );
}

/// A running task can be cancelled: its attempt ends as cancelled (in its
/// history, where kept), its lease with it, so the worker's renewal answers
/// false and its report is refused, leaving the task cancelled with no
/// result; lease recovery never brings it back, its unique key is free
/// again, and the next task of its ordering key may run.
pub async fn cancel_a_running_task(b: Subject, clock: Arc<ManualClock>) {
    let keyed = b.capabilities().unique_keys;
    let mut t = task("long").max_attempts(3);
    if keyed {
        t = t.unique_key("only-one");
    }
    let id = enqueue(&b, t).await;
    let got = reserve(&b, 1).await;
    assert_eq!(ids(&got), vec![id]);
    let lease = got[0].lease.clone();
    assert_eq!(b.cancel(id).await.expect("cancel"), TaskState::Cancelled);
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Cancelled);
    assert!(rec.finished_at.is_some());
    assert_eq!(
        rec.error.as_deref(),
        Some(conveyor_core::CANCELLED_WHILE_RUNNING)
    );
    if b.capabilities().history {
        let last = rec.history.last().expect("the cancelled attempt");
        assert_eq!(last.attempt, 1);
        assert_eq!(last.outcome, conveyor_core::AttemptOutcome::Cancelled);
        assert!(last.ended_at.is_some());
    }
    assert_eq!(
        b.renew(std::slice::from_ref(&lease), LEASE)
            .await
            .expect("renew"),
        vec![false],
        "the worker learns its lease ended"
    );
    let late = b
        .finish(vec![conveyor_core::Finish::new(
            lease.clone(),
            FinishAction::Complete {
                result: Some(b"42".to_vec()),
            },
        )])
        .await
        .expect("finish");
    assert!(
        matches!(late[0], Err(Error::StaleLease(t)) if t == id),
        "the worker's report is refused: {late:?}"
    );
    assert!(
        report(&b, lease, FinishAction::Release).await.is_err(),
        "so is handing it back"
    );
    clock.advance(LEASE * 2);
    assert_eq!(b.recover_expired().await.expect("recover"), 0);
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Cancelled);
    assert_eq!(rec.result, None);
    assert_eq!(b.cancel(id).await.expect("cancel"), TaskState::Cancelled);
    if keyed {
        let again = b
            .enqueue(task("long").unique_key("only-one"))
            .await
            .expect("enqueue");
        assert!(
            !again.duplicate,
            "the key is free once the task is cancelled"
        );
        let next = reserve(&b, 1).await;
        assert_eq!(ids(&next), vec![again.id], "only the new task runs");
        complete(&b, next[0].lease.clone()).await;
    } else {
        assert!(
            reserve(&b, 1).await.is_empty(),
            "the cancelled task never runs again"
        );
    }
    if b.capabilities().ordering_keys {
        let first = enqueue(&b, task("first").ordering_key("user-7")).await;
        let second = enqueue(&b, task("second").ordering_key("user-7")).await;
        let got = reserve(&b, 10).await;
        assert_eq!(ids(&got), vec![first], "one task of a key runs at a time");
        assert_eq!(b.cancel(first).await.expect("cancel"), TaskState::Cancelled);
        let next = reserve_until(&b, 1, 10).await;
        assert_eq!(ids(&next), vec![second], "the key's next task runs");
    }
}

/// A task that completes after earlier attempts failed or lost their lease
/// shows no error: the record says it succeeded, and only its history (where
/// kept) tells of the attempts before.
pub async fn a_completed_task_shows_no_earlier_error(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("x").max_attempts(3)).await;
    let first = reserve(&b, 1).await;
    report(
        &b,
        first[0].lease.clone(),
        FinishAction::Retry {
            delay: Duration::from_secs(1),
            error: "first try failed".into(),
        },
    )
    .await
    .expect("retry");
    clock.advance(Duration::from_secs(2));
    reserve(&b, 1).await;
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(b.recover_expired().await.expect("recover"), 1);
    assert!(
        get(&b, id).await.error.is_some(),
        "a lost lease says so while the task waits"
    );
    let last = reserve(&b, 1).await;
    complete(&b, last[0].lease.clone()).await;
    let rec = get(&b, id).await;
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(
        rec.error, None,
        "a completed task shows no error of an attempt before"
    );
}

/// A finish racing a renewal of the same lease (a worker's lease keeper and
/// its settler touch one task at once): whichever the store applies first,
/// the finish is applied exactly once, the task completes with its result,
/// and nothing is left holding it.
pub async fn a_finish_racing_a_renewal_applies_once(b: Subject, _clock: Arc<ManualClock>) {
    let n = 20;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(enqueue(&b, task(&format!("race{i}"))).await);
    }
    let got = reserve_until(&b, n, n).await;
    assert_eq!(got.len(), n);
    let races = got.iter().map(|r| {
        let b = b.clone();
        let lease = r.lease.clone();
        async move {
            let renew = b.renew(std::slice::from_ref(&lease), LEASE);
            let finish = b.finish(vec![conveyor_core::Finish::new(
                lease.clone(),
                FinishAction::Complete {
                    result: Some(b"done".to_vec()),
                },
            )]);
            let (renewed, finished) = tokio::join!(renew, finish);
            (renewed, finished)
        }
    });
    for (renewed, finished) in futures_util::future::join_all(races).await {
        let renewed = renewed.expect("renew");
        assert_eq!(renewed.len(), 1);
        let finished = finished.expect("finish");
        assert!(
            matches!(finished.as_slice(), [Ok(())]),
            "the finish applies whatever the renewal did: {finished:?}"
        );
    }
    for id in ids {
        let rec = get(&b, id).await;
        assert_eq!(rec.state, TaskState::Completed, "task {id}");
        assert_eq!(rec.result.as_deref(), Some(&b"done"[..]), "task {id}");
    }
    for r in &got {
        let again = b
            .renew(std::slice::from_ref(&r.lease), LEASE)
            .await
            .expect("renew");
        assert_eq!(again, vec![false], "a finished task's lease is gone");
    }
}
