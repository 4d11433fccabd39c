//! Unique keys (one unfinished task per key and queue) and ordering keys (one at
//! a time, in enqueue order) on the embedded backend.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

mod common;

use conveyor_core::parts::*;
use std::time::Duration;

use common::{task, Fixture};
use conveyor_core::{Backend, Finish, FinishAction, TaskState};

#[tokio::test]
async fn unique_key_returns_the_existing_task() {
    let f = Fixture::new();
    let first = f.backend.enqueue(task("a").unique_key("k")).await.unwrap();
    assert!(!first.duplicate);
    let again = f.backend.enqueue(task("b").unique_key("k")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    // Another queue, or another key, is another task.
    let other_queue = f
        .backend
        .enqueue(task("a").unique_key("k").queue("q2"))
        .await
        .unwrap();
    assert!(!other_queue.duplicate);
    let other_key = f.backend.enqueue(task("a").unique_key("k2")).await.unwrap();
    assert!(!other_key.duplicate);

    // Still a duplicate while it runs; a new task once it finished.
    let r = f.reserve("default", 1).await.remove(0);
    assert_eq!(r.lease.id, first.id);
    let running = f.backend.enqueue(task("c").unique_key("k")).await.unwrap();
    assert_eq!(running.id, first.id);
    assert!(running.duplicate);
    f.backend
        .finish(vec![Finish::complete(r.lease)])
        .await
        .unwrap()[0]
        .as_ref()
        .unwrap();
    let after = f.backend.enqueue(task("d").unique_key("k")).await.unwrap();
    assert!(!after.duplicate);
    assert_ne!(after.id, first.id);
    assert_eq!(
        f.backend.get(after.id).await.unwrap().unwrap().handler,
        "d",
        "the new task is stored as given"
    );
}

#[tokio::test]
async fn unique_key_within_one_batch() {
    let f = Fixture::new();
    let out = f
        .backend
        .enqueue_many(vec![
            task("a").unique_key("k"),
            task("b"),
            task("c").unique_key("k"),
            task("d").unique_key("k").delay(Duration::from_secs(5)),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 4);
    assert!(!out[0].duplicate && !out[1].duplicate);
    assert!(out[2].duplicate && out[3].duplicate);
    assert_eq!(out[2].id, out[0].id);
    assert_eq!(out[3].id, out[0].id);
    let stats = f.backend.stats().await.unwrap();
    assert_eq!(stats[0].count(TaskState::Available), 2);
}

#[tokio::test]
async fn cancelled_or_dead_task_frees_its_unique_key() {
    let f = Fixture::new();
    let a = f.enqueue(task("a").unique_key("k")).await;
    assert_eq!(f.backend.cancel(a).await.unwrap(), TaskState::Cancelled);
    let b = f.backend.enqueue(task("b").unique_key("k")).await.unwrap();
    assert!(!b.duplicate);
    let r = f.reserve("default", 1).await.remove(0);
    f.backend
        .finish(vec![Finish::new(
            r.lease,
            FinishAction::DeadLetter { error: "x".into() },
        )])
        .await
        .unwrap();
    let c = f.backend.enqueue(task("c").unique_key("k")).await.unwrap();
    assert!(!c.duplicate);
    // Requeueing the dead one would make two unfinished tasks with the key: it
    // stays dead.
    assert_eq!(f.backend.requeue_dead(&[b.id]).await.unwrap(), 0);
    assert_eq!(
        f.backend.get(b.id).await.unwrap().unwrap().state,
        TaskState::Dead
    );
}

#[tokio::test]
async fn ordering_key_runs_one_at_a_time_in_enqueue_order() {
    let f = Fixture::new();
    let a1 = f.enqueue(task("a1").ordering_key("a")).await;
    let a2 = f.enqueue(task("a2").ordering_key("a").priority(10)).await;
    let b1 = f.enqueue(task("b1").ordering_key("b")).await;
    let free = f.enqueue(task("free")).await;
    let a3 = f.enqueue(task("a3").ordering_key("a")).await;

    let first = f.reserve("default", 10).await;
    let mut got: Vec<_> = first.iter().map(|r| r.lease.id).collect();
    got.sort();
    assert_eq!(
        got,
        vec![a1, b1, free],
        "one task per key; a higher priority does not jump its key"
    );
    assert!(f.reserve("default", 10).await.is_empty());

    // a1 fails and waits for its backoff: a2 still waits behind it.
    let a1_lease = first
        .iter()
        .find(|r| r.lease.id == a1)
        .unwrap()
        .lease
        .clone();
    f.backend
        .finish(vec![Finish::new(
            a1_lease,
            FinishAction::Retry {
                delay: Duration::from_secs(5),
                error: "later".into(),
            },
        )])
        .await
        .unwrap()[0]
        .as_ref()
        .unwrap();
    assert!(
        f.reserve("default", 10).await.is_empty(),
        "a2 waits behind the retrying a1"
    );
    f.clock.advance(Duration::from_secs(5));
    let r = f.reserve("default", 10).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].lease.id, a1);
    f.backend
        .finish(vec![Finish::complete(r[0].lease.clone())])
        .await
        .unwrap();

    let r = f.reserve("default", 10).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].lease.id, a2);
    assert_eq!(r[0].ordering_key.as_deref(), Some("a"));
    f.backend
        .finish(vec![Finish::complete(r[0].lease.clone())])
        .await
        .unwrap();
    let r = f.reserve("default", 10).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].lease.id, a3);
}

#[tokio::test]
async fn ordering_key_is_per_queue_and_scheduled_tasks_hold_their_turn() {
    let f = Fixture::new();
    let later = f
        .enqueue(
            task("later")
                .ordering_key("k")
                .delay(Duration::from_secs(60)),
        )
        .await;
    let next = f.enqueue(task("next").ordering_key("k")).await;
    let elsewhere = f.enqueue(task("x").ordering_key("k").queue("q2")).await;
    assert!(f.reserve("default", 10).await.is_empty(), "behind `later`");
    assert_eq!(f.reserve("q2", 10).await[0].lease.id, elsewhere);
    assert_eq!(f.backend.cancel(later).await.unwrap(), TaskState::Cancelled);
    assert_eq!(f.reserve("default", 10).await[0].lease.id, next);
}

#[tokio::test]
async fn requeued_dead_task_does_not_run_beside_a_running_one() {
    let f = Fixture::new();
    let first = f.enqueue(task("first").ordering_key("k")).await;
    let second = f.enqueue(task("second").ordering_key("k")).await;
    let r = f.reserve("default", 10).await.remove(0);
    assert_eq!(r.lease.id, first);
    f.backend
        .finish(vec![Finish::new(
            r.lease,
            FinishAction::DeadLetter { error: "x".into() },
        )])
        .await
        .unwrap();
    let r2 = f.reserve("default", 10).await.remove(0);
    assert_eq!(r2.lease.id, second);
    assert_eq!(f.backend.requeue_dead(&[first]).await.unwrap(), 1);
    assert!(
        f.reserve("default", 10).await.is_empty(),
        "the requeued task waits until `second` is done"
    );
    f.backend
        .finish(vec![Finish::complete(r2.lease)])
        .await
        .unwrap();
    assert_eq!(f.reserve("default", 10).await[0].lease.id, first);
}
