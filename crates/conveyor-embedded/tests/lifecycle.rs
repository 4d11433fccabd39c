//! A task's life on the embedded backend: enqueue, reserve, renew, finish,
//! retries, leases running out, and the order tasks are handed out in.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

mod common;

use conveyor_core::parts::*;
use std::time::Duration;

use common::{queues, task, Fixture, LEASE};
use conveyor_core::{
    Backend, Clock, Error, Finish, FinishAction, Lease, NewTask, ReserveParams, TaskState,
    Timestamp,
};

fn complete(lease: Lease) -> Finish {
    Finish::new(
        lease,
        FinishAction::Complete {
            result: Some(b"ok".to_vec()),
        },
    )
}

fn retry(lease: Lease, delay: Duration) -> Finish {
    Finish::new(
        lease,
        FinishAction::Retry {
            delay,
            error: "boom".into(),
        },
    )
}

#[tokio::test]
async fn enqueue_reserve_complete() {
    let f = Fixture::new();
    let id = f.enqueue(task("a").timeout(Duration::from_secs(5))).await;
    let rec = f.backend.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Available);
    assert_eq!(rec.attempts, 0);
    assert_eq!(rec.created_at, f.clock.now());

    let got = f.reserve("default", 10).await;
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.lease.id, id);
    assert_eq!(r.attempt, 1);
    assert_eq!(r.handler, "a");
    assert_eq!(r.payload, b"a");
    assert_eq!(r.queue, "default");
    assert_eq!(r.timeout, Some(Duration::from_secs(5)));
    assert_eq!(r.lease_until, f.clock.now().plus(LEASE));
    assert!(
        f.reserve("default", 10).await.is_empty(),
        "reserved once only"
    );
    assert_eq!(
        f.backend.get(id).await.unwrap().unwrap().state,
        TaskState::Running
    );

    let out = f
        .backend
        .finish(vec![complete(r.lease.clone())])
        .await
        .unwrap();
    assert!(out[0].is_ok());
    let rec = f.backend.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(rec.result.as_deref(), Some(&b"ok"[..]));
    assert_eq!(rec.finished_at, Some(f.clock.now()));
    assert!(f
        .backend
        .get(conveyor_core::TaskId(999_999))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn priority_then_enqueue_order() {
    let f = Fixture::new();
    let low = f.enqueue(task("low")).await;
    let high = f.enqueue(task("high").priority(5)).await;
    let mid = f.enqueue(task("mid").priority(1)).await;
    let high2 = f.enqueue(task("high2").priority(5)).await;
    let got: Vec<_> = f
        .reserve("default", 10)
        .await
        .iter()
        .map(|r| r.lease.id)
        .collect();
    assert_eq!(got, vec![high, high2, mid, low]);

    // One at a time gives the same order.
    let f = Fixture::new();
    let low = f.enqueue(task("low")).await;
    let high = f.enqueue(task("high").priority(5)).await;
    assert_eq!(f.reserve("default", 1).await[0].lease.id, high);
    assert_eq!(f.reserve("default", 1).await[0].lease.id, low);
}

#[tokio::test]
async fn queues_are_scanned_in_the_given_order() {
    let f = Fixture::new();
    let a = f.enqueue(task("a").queue("qa")).await;
    let b = f.enqueue(task("b").queue("qb").priority(9)).await;
    let other = f.enqueue(task("c").queue("qc")).await;
    let got = f
        .backend
        .reserve(ReserveParams::new(&queues(&["qa", "qb"]), 1, LEASE))
        .await
        .unwrap();
    assert_eq!(got[0].lease.id, a);
    let got = f
        .backend
        .reserve(ReserveParams::new(&queues(&["qa", "qb"]), 5, LEASE))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.id, b);
    assert_eq!(got[0].queue, "qb");
    assert_eq!(f.reserve("qc", 5).await[0].lease.id, other);
    assert!(f
        .backend
        .reserve(ReserveParams::new(&[], 5, LEASE))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn delayed_task_waits_for_the_clock() {
    let f = Fixture::new();
    let t0 = f.clock.now();
    let id = f
        .enqueue(task("later").delay(Duration::from_secs(10)))
        .await;
    let at = f
        .enqueue(task("at").run_at(t0.plus(Duration::from_secs(20))))
        .await;
    let past = f.enqueue(task("past").run_at(Timestamp(0))).await;
    let rec = f.backend.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Scheduled);
    assert_eq!(rec.run_at, t0.plus(Duration::from_secs(10)));
    assert_eq!(
        f.backend.get(past).await.unwrap().unwrap().state,
        TaskState::Available
    );

    assert_eq!(f.reserve("default", 10).await[0].lease.id, past);
    f.clock.advance(Duration::from_millis(9_999));
    assert!(f.reserve("default", 10).await.is_empty());
    f.clock.advance(Duration::from_millis(1));
    let got = f.reserve("default", 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.id, id);
    assert_eq!(got[0].due_at, t0.plus(Duration::from_secs(10)));
    assert_eq!(got[0].enqueued_at, t0);
    f.clock.advance(Duration::from_secs(10));
    assert_eq!(f.reserve("default", 10).await[0].lease.id, at);
}

#[tokio::test]
async fn retry_then_dead_after_max_attempts() {
    let f = Fixture::new();
    let id = f.enqueue(task("flaky").max_attempts(2)).await;
    let r = f.reserve("default", 1).await.remove(0);
    f.backend
        .finish(vec![retry(r.lease, Duration::from_secs(5))])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let rec = f.backend.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Retrying);
    assert_eq!(rec.error.as_deref(), Some("boom"));
    assert_eq!(rec.run_at, f.clock.now().plus(Duration::from_secs(5)));
    assert_eq!(rec.finished_at, None);
    assert!(f.reserve("default", 1).await.is_empty(), "backoff not over");

    f.clock.advance(Duration::from_secs(5));
    let r = f.reserve("default", 1).await.remove(0);
    assert_eq!(r.attempt, 2);
    assert_ne!(r.lease.token, 0);
    f.backend
        .finish(vec![retry(r.lease, Duration::from_secs(5))])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let rec = f.backend.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Dead);
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.error.as_deref(), Some("boom"));
    assert_eq!(rec.finished_at, Some(f.clock.now()));
    f.clock.advance(Duration::from_secs(60));
    assert!(f.reserve("default", 1).await.is_empty());
}

#[tokio::test]
async fn dead_letter_and_discard() {
    let f = Fixture::new();
    let a = f.enqueue(task("a")).await;
    let b = f.enqueue(task("b")).await;
    let got = f.reserve("default", 2).await;
    let out = f
        .backend
        .finish(vec![
            Finish::new(
                got[0].lease.clone(),
                FinishAction::DeadLetter {
                    error: "bad payload".into(),
                },
            ),
            Finish::new(
                got[1].lease.clone(),
                FinishAction::Discard {
                    reason: "obsolete".into(),
                },
            ),
        ])
        .await
        .unwrap();
    assert!(out.iter().all(Result::is_ok));
    let a = f.backend.get(a).await.unwrap().unwrap();
    assert_eq!(a.state, TaskState::Dead);
    assert_eq!(a.error.as_deref(), Some("bad payload"));
    let b = f.backend.get(b).await.unwrap().unwrap();
    assert_eq!(b.state, TaskState::Cancelled);
    assert_eq!(b.error.as_deref(), Some("obsolete"));
    assert!(b.finished_at.is_some());
}

#[tokio::test]
async fn release_does_not_count_the_attempt() {
    let f = Fixture::new();
    let id = f.enqueue(task("a").max_attempts(1)).await;
    let first = f.reserve("default", 1).await.remove(0);
    assert_eq!(first.attempt, 1);
    f.backend
        .finish(vec![Finish::new(
            first.lease.clone(),
            FinishAction::Release,
        )])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let rec = f.backend.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Available);
    assert_eq!(rec.attempts, 0);

    let second = f.reserve("default", 1).await.remove(0);
    assert_eq!(second.attempt, 1, "the released attempt did not count");
    assert_ne!(second.lease.token, first.lease.token, "tokens never repeat");
    let out = f.backend.finish(vec![complete(first.lease)]).await.unwrap();
    assert!(matches!(out[0], Err(Error::StaleLease(x)) if x == id));
}

#[tokio::test]
async fn stale_token_refused_after_expiry_and_new_reservation() {
    let f = Fixture::new();
    let id = f.enqueue(task("slow")).await;
    let lease = Duration::from_secs(10);
    let old = f
        .backend
        .reserve(ReserveParams::new(&queues(&["default"]), 1, lease))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(f.backend.recover_expired().await.unwrap(), 0);
    assert_eq!(
        f.backend
            .renew(std::slice::from_ref(&old.lease), lease)
            .await
            .unwrap(),
        vec![true]
    );
    assert_eq!(
        f.backend.get(id).await.unwrap().unwrap().state,
        TaskState::Running
    );

    f.clock.advance(Duration::from_secs(11));
    assert_eq!(f.backend.recover_expired().await.unwrap(), 1);
    let rec = f.backend.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Available);
    assert_eq!(rec.error.as_deref(), Some("lease expired"));

    let new = f.reserve("default", 1).await.remove(0);
    assert_eq!(new.attempt, 2);
    assert_ne!(new.lease.token, old.lease.token);
    assert_eq!(
        f.backend
            .renew(&[old.lease.clone(), new.lease.clone()], lease)
            .await
            .unwrap(),
        vec![false, true]
    );
    let out = f
        .backend
        .finish(vec![complete(old.lease), complete(new.lease.clone())])
        .await
        .unwrap();
    assert!(matches!(out[0], Err(Error::StaleLease(x)) if x == id));
    assert!(out[1].is_ok(), "the good report of the same batch applies");
    assert_eq!(
        f.backend.get(id).await.unwrap().unwrap().state,
        TaskState::Completed
    );
    // A report for a finished task, or an unknown one, is stale too.
    let out = f
        .backend
        .finish(vec![
            complete(new.lease),
            complete(Lease::new(conveyor_core::TaskId(u64::MAX), 1)),
        ])
        .await
        .unwrap();
    assert!(out.iter().all(|r| matches!(r, Err(Error::StaleLease(_)))));
}

#[tokio::test]
async fn lease_expiring_on_the_last_attempt_is_dead() {
    let f = Fixture::new();
    let id = f.enqueue(task("hang").max_attempts(1)).await;
    let _held = f.reserve("default", 1).await;
    f.clock.advance(LEASE);
    assert_eq!(f.backend.recover_expired().await.unwrap(), 0, "not before");
    f.clock.advance(Duration::from_millis(1));
    assert_eq!(f.backend.recover_expired().await.unwrap(), 1);
    let rec = f.backend.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Dead);
    assert_eq!(
        rec.error.as_deref(),
        Some("lease expired on the last attempt")
    );
    assert_eq!(rec.finished_at, Some(f.clock.now()));
}

#[tokio::test]
async fn invalid_task_stores_nothing() {
    let f = Fixture::new();
    let mut bad = task("x");
    bad.max_attempts = 0;
    let err = f
        .backend
        .enqueue_many(vec![task("good"), bad, task("")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    assert!(f.backend.stats().await.unwrap().is_empty());
    assert!(f.backend.enqueue_many(vec![]).await.unwrap().is_empty());
}

#[tokio::test]
async fn enqueue_many_keeps_order_and_wakes_waiters() {
    let f = std::sync::Arc::new(Fixture::new());
    let waiter = {
        let f = f.clone();
        tokio::spawn(async move {
            f.backend
                .wait_for_work(&queues(&["default"]), Duration::from_secs(3600))
                .await
        })
    };
    // Let the waiter register (current-thread runtime: it runs now).
    tokio::task::yield_now().await;
    let tasks: Vec<NewTask> = (0..10).map(|i| task(&format!("t{i}"))).collect();
    let out = f.backend.enqueue_many(tasks).await.unwrap();
    let ids: Vec<_> = out.iter().map(|e| e.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids follow the batch's order");
    assert!(out.iter().all(|e| !e.duplicate));
    let woke = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the enqueue wakes the waiter")
        .unwrap();
    assert!(woke);
}

/// A second handle on the same file (another process) keeps a graph that
/// an expansion made through the first leaves stale: it reads the
/// expansion back, settles the added nodes and shows what the first shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expansion_is_seen_from_another_handle_on_the_file() {
    let f = Fixture::new();
    let (first, other) = (f.reopen(), f.reopen());
    conveyor_testkit::conformance::an_expansion_is_seen_from_another_handle(
        std::sync::Arc::new(first),
        std::sync::Arc::new(other),
    )
    .await;
}
