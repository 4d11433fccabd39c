//! Cancelling, counting, listing, requeueing, purging and pruning on the
//! embedded backend.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

mod common;

use conveyor_core::parts::*;
use std::time::Duration;

use common::{task, Fixture};
use conveyor_core::{
    Backend, Clock, Error, Finish, FinishAction, Lease, ListParams, Retention, TaskId, TaskState,
};

async fn finish(f: &Fixture, lease: Lease, action: FinishAction) {
    f.backend
        .finish(vec![Finish::new(lease, action)])
        .await
        .unwrap()[0]
        .as_ref()
        .unwrap();
}

fn dead(error: &str) -> FinishAction {
    FinishAction::DeadLetter {
        error: error.into(),
    }
}

#[tokio::test]
async fn cancel_waiting_and_running_tasks() {
    let f = Fixture::new();
    let waiting = f.enqueue(task("w")).await;
    let scheduled = f.enqueue(task("s").delay(Duration::from_secs(9))).await;
    assert_eq!(
        f.backend.cancel(waiting).await.unwrap(),
        TaskState::Cancelled
    );
    assert_eq!(
        f.backend.cancel(scheduled).await.unwrap(),
        TaskState::Cancelled
    );
    let rec = f.backend.get(waiting).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Cancelled);
    assert_eq!(rec.finished_at, Some(f.clock.now()));
    assert_eq!(
        f.backend.cancel(waiting).await.unwrap(),
        TaskState::Cancelled
    );

    let running = f.enqueue(task("r")).await;
    let r = f.reserve("default", 1).await.remove(0);
    assert_eq!(
        f.backend.cancel(running).await.unwrap(),
        TaskState::Cancelled
    );
    let late = f
        .backend
        .finish(vec![Finish::new(
            r.lease,
            FinishAction::Complete { result: None },
        )])
        .await
        .unwrap();
    assert!(matches!(late[0], Err(Error::StaleLease(_))));
    let done = f.enqueue(task("d")).await;
    let r = f.reserve("default", 1).await.remove(0);
    finish(&f, r.lease, FinishAction::Complete { result: None }).await;
    assert_eq!(f.backend.cancel(done).await.unwrap(), TaskState::Completed);
    assert!(matches!(
        f.backend.cancel(TaskId(424_242)).await,
        Err(Error::NotFound(TaskId(424_242)))
    ));
    assert!(matches!(
        f.backend.cancel(TaskId(u64::MAX)).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn stats_count_states_and_oldest_ready() {
    let f = Fixture::new();
    let t0 = f.clock.now();
    f.enqueue(task("a")).await;
    f.clock.advance(Duration::from_secs(1));
    f.enqueue(task("b")).await;
    f.enqueue(task("s").delay(Duration::from_secs(10))).await;
    f.enqueue(task("other").queue("q2").delay(Duration::from_secs(10)))
        .await;
    let stats = f.backend.stats().await.unwrap();
    assert_eq!(stats.len(), 2);
    let d = &stats[0];
    assert_eq!(d.queue, "default");
    assert_eq!(d.count(TaskState::Available), 2);
    assert_eq!(d.count(TaskState::Scheduled), 1);
    assert_eq!(d.counts.len(), 2, "states with no task are absent");
    assert_eq!(d.oldest_ready, Some(t0));
    assert_eq!(stats[1].queue, "q2");
    assert_eq!(stats[1].oldest_ready, None, "nothing ready in q2 yet");

    // The first two run: the oldest ready is now the scheduled task, once due.
    let got = f.reserve("default", 2).await;
    let stats = f.backend.stats().await.unwrap();
    assert_eq!(stats[0].count(TaskState::Running), 2);
    assert_eq!(stats[0].oldest_ready, None);
    f.clock.advance(Duration::from_secs(10));
    let stats = f.backend.stats().await.unwrap();
    // Enqueued at t0 + 1 s with a 10 s delay: ready from t0 + 11 s.
    assert_eq!(
        stats[0].oldest_ready,
        Some(t0.plus(Duration::from_secs(11))),
        "a due scheduled task counts as ready from its due time"
    );
    assert_eq!(
        stats[1].oldest_ready,
        Some(t0.plus(Duration::from_secs(11)))
    );
    for r in got {
        finish(&f, r.lease, FinishAction::Complete { result: None }).await;
    }
    let stats = f.backend.stats().await.unwrap();
    assert_eq!(stats[0].count(TaskState::Completed), 2);
}

#[tokio::test]
async fn list_requeue_and_purge_dead() {
    let f = Fixture::new();
    let a = f.enqueue(task("a")).await;
    let b = f.enqueue(task("b")).await;
    let c = f.enqueue(task("c").queue("q2")).await;
    for r in f.reserve("default", 2).await {
        finish(&f, r.lease, dead("broken")).await;
    }
    let r = f.reserve("q2", 1).await.remove(0);
    finish(&f, r.lease, dead("broken too")).await;

    let all = f
        .backend
        .list(&ListParams::new(TaskState::Dead).limit(10))
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![a, b, c], "oldest first");
    let one = f
        .backend
        .list(&ListParams::new(TaskState::Dead).limit(1))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let q2 = f
        .backend
        .list(&ListParams::new(TaskState::Dead).queue("q2").limit(10))
        .await
        .unwrap();
    assert_eq!(q2.len(), 1);
    assert_eq!(q2[0].error.as_deref(), Some("broken too"));

    assert_eq!(
        f.backend.requeue_dead(&[a, TaskId(999), c]).await.unwrap(),
        2
    );
    let rec = f.backend.get(a).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Available);
    assert_eq!(rec.attempts, 0);
    assert_eq!(rec.finished_at, None);
    assert_eq!(rec.error.as_deref(), Some("broken"), "the error is kept");
    assert_eq!(f.reserve("default", 5).await[0].attempt, 1);

    assert_eq!(f.backend.purge_dead(Some("q2")).await.unwrap(), 0);
    assert_eq!(f.backend.purge_dead(Some("default")).await.unwrap(), 1);
    assert!(f.backend.get(b).await.unwrap().is_none());
    assert_eq!(f.backend.purge_dead(None).await.unwrap(), 0);
}

#[tokio::test]
async fn prune_by_retention() {
    let f = Fixture::new();
    let done = f.enqueue(task("done")).await;
    let gone = f.enqueue(task("gone")).await;
    let failed = f.enqueue(task("failed")).await;
    let waiting = f
        .enqueue(task("waiting").delay(Duration::from_secs(1)))
        .await;
    let got = f.reserve("default", 3).await;
    for r in &got {
        let action = if r.lease.id == failed {
            dead("x")
        } else {
            FinishAction::Complete { result: None }
        };
        finish(&f, r.lease.clone(), action).await;
    }
    // `gone` was completed above; make one cancelled task too.
    let cancelled = f.enqueue(task("cancel me")).await;
    f.backend.cancel(cancelled).await.unwrap();

    let retention = Retention {
        finished: Duration::from_secs(3600),
        dead: Duration::from_secs(7200),
    };
    assert_eq!(f.backend.prune(retention).await.unwrap(), 0);
    f.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        f.backend.prune(retention).await.unwrap(),
        0,
        "not older yet"
    );
    f.clock.advance(Duration::from_millis(1));
    assert_eq!(f.backend.prune(retention).await.unwrap(), 3);
    assert!(f.backend.get(done).await.unwrap().is_none());
    assert!(f.backend.get(gone).await.unwrap().is_none());
    assert!(f.backend.get(cancelled).await.unwrap().is_none());
    assert!(
        f.backend.get(failed).await.unwrap().is_some(),
        "dead kept longer"
    );
    assert!(
        f.backend.get(waiting).await.unwrap().is_some(),
        "unfinished kept"
    );
    f.clock.advance(Duration::from_secs(3600));
    assert_eq!(f.backend.prune(retention).await.unwrap(), 1);
    assert!(f.backend.get(failed).await.unwrap().is_none());
    assert!(f.backend.get(waiting).await.unwrap().is_some());

    // Pruned ids are never handed out again.
    let next = f.enqueue(task("next")).await;
    assert!(next > cancelled);
}
