//! Dead-letter administration, retention, stats, atomic batches, capabilities.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Error, FinishAction, ListParams, ManualClock, NewTask, ReserveParams, Retention, TaskState,
};

use conveyor_core::Clock;

use super::*;

async fn kill(b: &Subject, t: NewTask) -> conveyor_core::TaskId {
    let id = enqueue(b, t).await;
    let got = b
        .reserve(ReserveParams::new(&default_queue(), 100, LEASE))
        .await
        .expect("reserve");
    let lease = got
        .iter()
        .find(|r| r.lease.id == id)
        .map(|r| r.lease.clone())
        .expect("reserved");
    report(
        b,
        lease,
        FinishAction::DeadLetter {
            error: "bad".into(),
        },
    )
    .await
    .expect("dead-letter");
    id
}

/// Dead tasks are listed oldest first, requeued with a fresh attempt count, or
/// purged.
pub async fn dead_letter_admin(b: Subject, _clock: Arc<ManualClock>) {
    let d1 = kill(&b, task("d1")).await;
    let d2 = kill(&b, task("d2")).await;
    let listed = b
        .list(&ListParams::new(TaskState::Dead).limit(10))
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![d1, d2]
    );
    assert_eq!(listed[0].error.as_deref(), Some("bad"));
    assert_eq!(
        b.list(&ListParams::new(TaskState::Dead).limit(1))
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(b
        .list(&ListParams::new(TaskState::Dead).queue("other").limit(10))
        .await
        .expect("list")
        .is_empty());
    assert_eq!(b.requeue_dead(&[d1]).await.expect("requeue"), 1);
    let rec = get(&b, d1).await;
    assert_eq!(rec.state, TaskState::Available);
    assert_eq!(rec.attempts, 0);
    assert_eq!(rec.finished_at, None);
    assert_eq!(ids(&reserve(&b, 10).await), vec![d1]);
    assert_eq!(
        b.requeue_dead(&[d1]).await.expect("requeue"),
        0,
        "only dead tasks"
    );
    assert_eq!(b.purge_dead(None).await.expect("purge"), 1);
    assert!(b.get(d2).await.expect("get").is_none());
}

/// Finished tasks older than the retention are deleted; dead ones have their own,
/// longer retention; unfinished tasks are never pruned.
pub async fn retention_prunes_finished_tasks(b: Subject, clock: Arc<ManualClock>) {
    let done = enqueue(&b, task("done")).await;
    let lease = reserve(&b, 1).await[0].lease.clone();
    complete(&b, lease).await;
    let dead = kill(&b, task("dead")).await;
    let cancelled = enqueue(&b, task("c")).await;
    b.cancel(cancelled).await.expect("cancel");
    let waiting = enqueue(&b, task("w").delay(Duration::from_secs(100_000))).await;
    let keep = Retention {
        finished: Duration::from_secs(3600),
        dead: Duration::from_secs(86_400),
    };
    clock.advance(Duration::from_secs(3599));
    assert_eq!(b.prune(keep).await.expect("prune"), 0);
    clock.advance(Duration::from_secs(2));
    assert_eq!(b.prune(keep).await.expect("prune"), 2);
    assert!(b.get(done).await.expect("get").is_none());
    assert!(b.get(cancelled).await.expect("get").is_none());
    assert_eq!(state(&b, dead).await, TaskState::Dead);
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(b.prune(keep).await.expect("prune"), 1);
    assert!(b.get(dead).await.expect("get").is_none());
    assert_eq!(state(&b, waiting).await, TaskState::Scheduled);
}

/// Counts per queue and state, and the enqueue time of the oldest ready task.
pub async fn stats_per_queue(b: Subject, clock: Arc<ManualClock>) {
    let t0 = clock.now();
    enqueue(&b, task("a")).await;
    clock.advance(Duration::from_secs(1));
    enqueue(&b, task("b")).await;
    enqueue(&b, task("c").delay(Duration::from_secs(50))).await;
    enqueue(&b, task("q").queue("other")).await;
    let lease = reserve(&b, 1).await[0].lease.clone();
    let stats = b.stats().await.expect("stats");
    let def = stats
        .iter()
        .find(|s| s.queue == conveyor_core::DEFAULT_QUEUE)
        .expect("default queue stats");
    assert_eq!(def.count(TaskState::Running), 1);
    assert_eq!(def.count(TaskState::Available), 1);
    assert_eq!(def.count(TaskState::Scheduled), 1);
    assert_eq!(def.count(TaskState::Dead), 0);
    assert_eq!(def.oldest_ready, Some(t0.plus(Duration::from_secs(1))));
    let other = stats.iter().find(|s| s.queue == "other").expect("other");
    assert_eq!(other.count(TaskState::Available), 1);
    complete(&b, lease).await;
    let stats = b.stats().await.expect("stats");
    let def = stats
        .iter()
        .find(|s| s.queue == conveyor_core::DEFAULT_QUEUE)
        .expect("default queue stats");
    assert_eq!(def.count(TaskState::Completed), 1);

    // A delayed task is ready from its due time, not its enqueue time: one
    // due but not made available yet, then one made available by a
    // reservation that promoted both.
    let enqueued = clock.now();
    for h in ["d1", "d2"] {
        enqueue(&b, task(h).queue("later").delay(Duration::from_secs(50))).await;
    }
    clock.advance(Duration::from_secs(60));
    let due = enqueued.plus(Duration::from_secs(50));
    let later = |stats: Vec<conveyor_core::QueueStats>| {
        stats
            .into_iter()
            .find(|s| s.queue == "later")
            .expect("later stats")
    };
    let stats = later(b.stats().await.expect("stats"));
    assert_eq!(
        stats.oldest_ready,
        Some(due),
        "due, not promoted: ready since its due time"
    );
    let queue = vec!["later".to_string()];
    let got = b
        .reserve(ReserveParams::new(&queue, 1, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    let stats = later(b.stats().await.expect("stats"));
    assert_eq!(stats.count(TaskState::Available), 1);
    assert_eq!(
        stats.oldest_ready,
        Some(due),
        "made available: ready since its due time"
    );
}

/// A batch with an invalid task stores nothing.
pub async fn batches_are_atomic(b: Subject, _clock: Arc<ManualClock>) {
    let bad = NewTask::new("", b"{}".to_vec());
    let res = b.enqueue_many(vec![task("ok"), bad]).await;
    assert!(res.is_err(), "an empty handler name is refused");
    assert!(
        reserve(&b, 10).await.is_empty(),
        "nothing of the batch stored"
    );
    let empty = b.enqueue_many(Vec::new()).await.expect("empty batch");
    assert!(empty.is_empty());
    let many = b
        .enqueue_many((0..50).map(|i| task(&format!("t{i}"))).collect())
        .await
        .expect("batch");
    assert_eq!(many.len(), 50);
    let got = reserve_until(&b, 50, 100).await;
    assert_eq!(ids(&got), many.iter().map(|e| e.id).collect::<Vec<_>>());
}

/// What a backend declares it supports works; what it does not returns
/// `Unsupported`, never a silent no-op: the core's capability flags, and each
/// optional part (present exactly when its accessor answers).
pub async fn capabilities_are_honest(b: Subject, _clock: Arc<ManualClock>) {
    let caps = b.capabilities();
    let unsupported = |r: Result<(), Error>| matches!(r, Err(Error::Unsupported(_)));
    let r = b.enqueue(task("u").unique_key("k")).await.map(|_| ());
    assert_eq!(caps.unique_keys, !unsupported(r));
    let r = b.enqueue(task("o").ordering_key("k")).await.map(|_| ());
    assert_eq!(caps.ordering_keys, !unsupported(r));
    let r = b
        .enqueue(task("d").delay(Duration::from_secs(1)))
        .await
        .map(|_| ());
    assert_eq!(caps.delay, !unsupported(r));
    let r = b
        .enqueue(task("k").keep(Duration::from_secs(60)))
        .await
        .map(|_| ());
    assert_eq!(caps.keep, !unsupported(r));
    let parts = b.parts();
    let has = |p: conveyor_core::Part| parts.contains(&p);
    let id = enqueue(&b, task("c")).await;
    let r = b.get(id).await.map(|_| ());
    assert_eq!(has(conveyor_core::Part::ResultStore), !unsupported(r));
    let r = b
        .list(&ListParams::new(TaskState::Dead).limit(1))
        .await
        .map(|_| ());
    assert_eq!(has(conveyor_core::Part::Inspection), !unsupported(r));
    let r = b.stats().await.map(|_| ());
    assert_eq!(has(conveyor_core::Part::Inspection), !unsupported(r));
    // The part is there when dead tasks can be purged; a backend may still
    // refuse to cancel (a broker cannot take a waiting message back).
    let r = b.purge_dead(Some("honest-nowhere")).await.map(|_| ());
    assert_eq!(has(conveyor_core::Part::Administration), !unsupported(r));
    let r = b.cancel(id).await.map(|_| ());
    if !has(conveyor_core::Part::Administration) {
        assert!(unsupported(r), "cancel without the administration part");
    }
    let r = b.recover_expired().await.map(|_| ());
    assert_eq!(has(conveyor_core::Part::Maintenance), !unsupported(r));
    let r = b
        .set_limits("l", conveyor_core::HandlerLimits::none())
        .await;
    assert_eq!(has(conveyor_core::Part::GlobalLimits), !unsupported(r));
    let r = b.limits().await.map(|_| ());
    assert_eq!(has(conveyor_core::Part::GlobalLimits), !unsupported(r));
    let r = b.paused_queues().await.map(|_| ());
    assert_eq!(has(conveyor_core::Part::QueueControl), !unsupported(r));
    assert!(!b.kind().is_empty());
}

/// A requeued dead task keeps the key rules: it waits while a task of its
/// ordering key runs, and stays dead while another task holds its unique key.
pub async fn requeued_dead_tasks_respect_keys(b: Subject, _clock: Arc<ManualClock>) {
    let old = kill(&b, task("old").ordering_key("k")).await;
    let newer = enqueue(&b, task("newer").ordering_key("k")).await;
    let running = reserve(&b, 10).await;
    assert_eq!(ids(&running), vec![newer]);
    assert_eq!(b.requeue_dead(&[old]).await.expect("requeue"), 1);
    assert!(
        reserve(&b, 10).await.is_empty(),
        "the requeued task waits while its key runs"
    );
    complete(&b, running[0].lease.clone()).await;
    assert_eq!(ids(&reserve(&b, 10).await), vec![old]);

    let dead = kill(&b, task("u1").unique_key("u")).await;
    let holder = enqueue(&b, task("u2").unique_key("u")).await;
    assert_ne!(dead, holder);
    assert_eq!(b.requeue_dead(&[dead]).await.expect("requeue"), 0);
    assert_eq!(state(&b, dead).await, TaskState::Dead);
}

/// The parts a backend's conformance test declares are exactly the parts it
/// has; a part it lacks answers `Unsupported`. Prints the parts skipped, so
/// the list shows in the test output.
pub async fn declared_parts(b: Subject, declared: &[(conveyor_core::Part, bool)]) {
    let real = b.parts();
    let mut missing = Vec::new();
    for (part, yes) in declared {
        assert_eq!(
            real.contains(part),
            *yes,
            "the {} backend declares {part:?} as {} but {} it",
            b.kind(),
            if *yes { "present" } else { "absent" },
            if *yes { "lacks" } else { "has" },
        );
        if !yes {
            missing.push(part.describe());
        }
    }
    if !missing.is_empty() {
        use std::io::Write;
        // Written past the test harness's capture, so it always shows.
        let _ = writeln!(
            std::io::stderr(),
            "conformance: the {} backend has no {}: the cases that need them are ignored",
            b.kind(),
            missing.join(", no ")
        );
    }
}
