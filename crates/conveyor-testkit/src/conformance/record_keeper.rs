//! The record keeper part: records another backend writes are read back
//! whole through the keeper's result store, replace each other, wake result
//! waiters when finished, expire, and are never the keeper's work; the
//! keeper's own tasks are never overwritten or removed by one.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Clock, ManualClock, RecordKeeper, Retention, TaskId, TaskRecord, TaskState, Timestamp,
    TraceContext,
};
use tokio::time::Instant;

use super::*;

/// Ids far from any the keeper hands out itself (kept records come from
/// another backend's id space); each case runs in a namespace of its own.
fn kept_id(n: u64) -> TaskId {
    TaskId((1 << 62) + n)
}

fn keeper(b: &Subject) -> &dyn RecordKeeper {
    b.record_keeper().expect("a record keeper")
}

/// A record as another backend writes it: no priority, keys or history.
fn record(id: TaskId, state: TaskState, now: Timestamp) -> TaskRecord {
    let finished = state.is_finished();
    TaskRecord {
        id,
        queue: conveyor_core::DEFAULT_QUEUE.into(),
        handler: "kept".into(),
        state,
        payload: format!("{{\"n\":{}}}", id.0).into_bytes(),
        priority: 0,
        attempts: u32::from(state != TaskState::Available && state != TaskState::Scheduled),
        max_attempts: 3,
        run_at: if state == TaskState::Scheduled {
            now.plus(Duration::from_secs(3600))
        } else {
            now
        },
        unique_key: None,
        ordering_key: None,
        result: (state == TaskState::Completed).then(|| b"{\"ok\":true}".to_vec()),
        error: matches!(
            state,
            TaskState::Retrying | TaskState::Dead | TaskState::Cancelled
        )
        .then(|| format!("failed as {}", state.as_str())),
        created_at: now.minus(Duration::from_secs(5)),
        finished_at: finished.then_some(now),
        trace: None,
        keep: None,
        expires_at: None,
        history: Vec::new(),
    }
}

async fn read(b: &Subject, id: TaskId) -> Option<TaskRecord> {
    b.result_store()
        .expect("a record keeper reads through its result store")
        .get(id)
        .await
        .expect("get")
}

/// Every state's record, with a result, an error, a trace, an empty and a
/// large payload, comes back as it was kept.
pub async fn kept_records_read_back_whole(b: Subject, clock: Arc<ManualClock>) {
    let now = clock.now();
    let mut records: Vec<TaskRecord> = TaskState::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| record(kept_id(i as u64), *s, now))
        .collect();
    let mut traced = record(kept_id(20), TaskState::Running, now);
    traced.trace = Some(
        TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("vendor=x".into()),
        )
        .expect("a trace context"),
    );
    traced.payload = Vec::new();
    records.push(traced);
    let mut large = record(kept_id(21), TaskState::Completed, now);
    large.payload = vec![7; 256 << 10];
    large.result = Some(Vec::new());
    large.queue = "q".repeat(conveyor_core::MAX_NAME_CHARS);
    large.handler = "é".repeat(conveyor_core::MAX_NAME_CHARS);
    records.push(large);
    keeper(&b)
        .keep(&records, Retention::default())
        .await
        .expect("keep");
    for r in &records {
        assert_eq!(read(&b, r.id).await.as_ref(), Some(r), "task {}", r.id);
    }
}

/// Keeping a record again replaces it whole: a result or error the new
/// one lacks is gone.
pub async fn keeping_again_replaces_the_record(b: Subject, clock: Arc<ManualClock>) {
    let now = clock.now();
    let id = kept_id(1);
    let keep = |r: TaskRecord| {
        let b = b.clone();
        async move {
            keeper(&b)
                .keep(&[r], Retention::default())
                .await
                .expect("keep");
        }
    };
    keep(record(id, TaskState::Retrying, now)).await;
    assert!(read(&b, id).await.expect("kept").error.is_some());
    keep(record(id, TaskState::Running, now)).await;
    let running = read(&b, id).await.expect("kept");
    assert_eq!(running, record(id, TaskState::Running, now));
    assert_eq!(
        running.error, None,
        "the error of the earlier record is gone"
    );
    keep(record(id, TaskState::Completed, now)).await;
    keep(record(id, TaskState::Running, now)).await;
    assert_eq!(read(&b, id).await.expect("kept").result, None);
}

/// A waiter on the keeper's result store is woken when a finished record
/// is kept.
pub async fn kept_finishes_wake_result_waiters(b: Subject, clock: Arc<ManualClock>) {
    let store = b.result_store().expect("a result store");
    let Some(_) = store.finish_mark().await else {
        return; // A store that cannot notify: `result_waits` checks it says so.
    };
    let now = clock.now();
    let id = kept_id(1);
    keeper(&b)
        .keep(&[record(id, TaskState::Running, now)], Retention::default())
        .await
        .expect("keep");
    let mark = store.finish_mark().await.expect("a mark");
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move {
            let store = b.result_store().expect("a result store");
            let t = Instant::now();
            store.wait_finished(id, mark, Duration::from_secs(60)).await;
            t.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    keeper(&b)
        .keep(
            &[record(id, TaskState::Completed, now)],
            Retention::default(),
        )
        .await
        .expect("keep");
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("a kept finish wakes the waiter (it would have waited a minute)")
        .expect("the waiter ran");
    assert!(waited < Duration::from_secs(60));
    assert_eq!(
        read(&b, id).await.expect("kept").state,
        TaskState::Completed
    );
}

/// A kept record is never the keeper's work: not reserved, not cancelled,
/// not requeued, not listed or counted; the keeper's own tasks beside it
/// run as ever.
pub async fn kept_records_are_never_work(b: Subject, clock: Arc<ManualClock>) {
    let now = clock.now();
    let waiting = record(kept_id(1), TaskState::Available, now);
    let dead = record(kept_id(2), TaskState::Dead, now);
    keeper(&b)
        .keep(&[waiting.clone(), dead.clone()], Retention::default())
        .await
        .expect("keep");
    let own = enqueue(&b, task("own")).await;
    let mut got = reserve_until(&b, 1, 10).await;
    got.extend(reserve(&b, 10).await);
    let ids: Vec<TaskId> = got.iter().map(|r| r.lease.id).collect();
    assert_eq!(ids, vec![own], "only the keeper's own task is reserved");
    complete(&b, got[0].lease.clone()).await;
    if let Ok(admin) = b.administration() {
        let after = admin.cancel(waiting.id).await;
        assert!(
            !matches!(after, Ok(TaskState::Cancelled)),
            "a kept record was cancelled: {after:?}"
        );
        assert_eq!(admin.requeue_dead(&[dead.id]).await.expect("requeue"), 0);
    }
    if let Ok(maintenance) = b.maintenance() {
        clock.advance(LEASE * 4);
        maintenance.recover_expired().await.expect("recover");
    }
    assert_eq!(read(&b, waiting.id).await.as_ref(), Some(&waiting));
    assert_eq!(read(&b, dead.id).await.as_ref(), Some(&dead));
    if let Ok(inspection) = b.inspection() {
        for s in TaskState::ALL {
            let listed = inspection
                .list(&conveyor_core::ListParams::new(s))
                .await
                .expect("list");
            assert!(
                listed.iter().all(|r| r.id == own),
                "kept records are listed as {s:?}: {:?}",
                listed.iter().map(|r| r.id).collect::<Vec<_>>()
            );
        }
        let counted = all_counted(inspection).await;
        assert_eq!(counted, 1, "kept records are counted");
    }
}

/// A record whose id is one of the keeper's own tasks is refused, writing
/// nothing of its batch; forgetting that id leaves the task alone.
pub async fn own_tasks_are_never_overwritten(b: Subject, clock: Arc<ManualClock>) {
    let now = clock.now();
    let own = enqueue(&b, task("own")).await;
    let before = get(&b, own).await;
    let other = record(kept_id(1), TaskState::Running, now);
    let refused = keeper(&b)
        .keep(
            &[other.clone(), record(own, TaskState::Completed, now)],
            Retention::default(),
        )
        .await;
    assert!(refused.is_err(), "a record over an own task was kept");
    assert_eq!(get(&b, own).await, before);
    assert_eq!(read(&b, other.id).await, None, "the batch was half kept");
    keeper(&b).forget(&[own]).await.expect("forget");
    assert_eq!(get(&b, own).await, before);
}

/// Forgotten records are gone; an id never kept is skipped.
pub async fn forgotten_records_are_gone(b: Subject, clock: Arc<ManualClock>) {
    let now = clock.now();
    let (one, two) = (kept_id(1), kept_id(2));
    keeper(&b)
        .keep(
            &[
                record(one, TaskState::Available, now),
                record(two, TaskState::Completed, now),
            ],
            Retention::default(),
        )
        .await
        .expect("keep");
    keeper(&b).forget(&[one, kept_id(3)]).await.expect("forget");
    assert_eq!(read(&b, one).await, None);
    assert!(read(&b, two).await.is_some());
}

/// Kept records expire: finished ones after the retention of their state,
/// unfinished ones the dead retention after they were due.
pub async fn kept_records_expire(b: Subject, clock: Arc<ManualClock>) {
    let retention = Retention {
        finished: Duration::from_secs(60),
        dead: Duration::from_secs(600),
    };
    let now = clock.now();
    let done = record(kept_id(1), TaskState::Completed, now);
    let dead = record(kept_id(2), TaskState::Dead, now);
    let running = record(kept_id(3), TaskState::Running, now);
    keeper(&b)
        .keep(&[done.clone(), dead.clone(), running.clone()], retention)
        .await
        .expect("keep");
    // Expired records go at the keeper's next step (a keep here), or on its
    // own schedule: look again for a while.
    let expired_by = |at: Duration, gone: Vec<TaskId>, kept: Vec<TaskId>| {
        let b = b.clone();
        let clock = clock.clone();
        async move {
            clock.set(now.plus(at));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                keeper(&b)
                    .keep(
                        &[record(kept_id(9), TaskState::Running, clock.now())],
                        retention,
                    )
                    .await
                    .expect("keep");
                let mut missing = Vec::new();
                for id in &gone {
                    if read(&b, *id).await.is_some() {
                        missing.push(*id);
                    }
                }
                for id in &kept {
                    assert!(read(&b, *id).await.is_some(), "task {id} expired early");
                }
                if missing.is_empty() {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "kept records {missing:?} outlived their retention"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    expired_by(
        Duration::from_secs(30),
        vec![],
        vec![done.id, dead.id, running.id],
    )
    .await;
    expired_by(
        Duration::from_secs(61),
        vec![done.id],
        vec![dead.id, running.id],
    )
    .await;
    expired_by(Duration::from_secs(601), vec![dead.id, running.id], vec![]).await;
}

/// Kept records expire with no write after them: `expire_kept` removes
/// exactly those past their expiry (a writer gone quiet leaves nothing
/// behind), and never the keeper's own tasks.
pub async fn expire_kept_drops_expired_records_alone(b: Subject, clock: Arc<ManualClock>) {
    let retention = Retention {
        finished: Duration::from_secs(60),
        dead: Duration::from_secs(600),
    };
    let now = clock.now();
    // More than one batch of them.
    let done: Vec<TaskRecord> = (0..450)
        .map(|i| record(kept_id(100 + i), TaskState::Completed, now))
        .collect();
    let dead = record(kept_id(1), TaskState::Dead, now);
    keeper(&b).keep(&done, retention).await.expect("keep");
    keeper(&b)
        .keep(std::slice::from_ref(&dead), retention)
        .await
        .expect("keep");
    let own = enqueue(&b, task("own")).await;
    assert_eq!(keeper(&b).expire_kept().await.expect("expire"), 0);
    clock.set(now.plus(Duration::from_secs(61)));
    assert_eq!(keeper(&b).expire_kept().await.expect("expire"), 450);
    for r in done.iter().step_by(50) {
        assert!(
            read(&b, r.id).await.is_none(),
            "task {} outlived its retention",
            r.id
        );
    }
    assert!(
        read(&b, dead.id).await.is_some(),
        "a dead record keeps its longer retention"
    );
    assert!(read(&b, own).await.is_some(), "the keeper's own task stays");
    assert_eq!(keeper(&b).expire_kept().await.expect("expire"), 0);
}

/// Kept records are listed and counted by queue and state, apart from the
/// keeper's own tasks: in the order they were first kept, moved between
/// states when kept again, gone from the listing once forgotten, purged or
/// expired; the keeper's own listing and counts never show them.
pub async fn kept_records_are_listed_and_counted_apart(b: Subject, clock: Arc<ManualClock>) {
    use conveyor_core::ListParams;
    let now = clock.now();
    let k = keeper(&b);
    let in_queue = |mut r: TaskRecord, q: &str, h: &str| {
        r.queue = q.into();
        r.handler = h.into();
        r
    };
    // Ids out of order: the listing follows the order they were kept in.
    let a1 = record(kept_id(50), TaskState::Available, now);
    let d1 = record(kept_id(7), TaskState::Dead, now);
    let a2 = in_queue(record(kept_id(3), TaskState::Available, now), "other", "x");
    let d2 = record(kept_id(90), TaskState::Dead, now);
    let done = record(kept_id(1), TaskState::Completed, now);
    k.keep(&[a1.clone(), d1.clone(), a2.clone()], Retention::default())
        .await
        .expect("keep");
    k.keep(&[d2.clone(), done.clone()], Retention::default())
        .await
        .expect("keep");
    let own = enqueue(&b, task("own")).await;
    let ids = |rs: Vec<TaskRecord>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let list = |p: ListParams| async move { ids(k.list_kept(&p).await.expect("list kept")) };
    let available = ListParams::new(TaskState::Available);
    assert_eq!(list(available.clone()).await, vec![a1.id, a2.id]);
    assert_eq!(
        list(available.clone().newest_first()).await,
        vec![a2.id, a1.id]
    );
    assert_eq!(list(available.clone().queue("other")).await, vec![a2.id]);
    assert_eq!(list(available.clone().handler("x")).await, vec![a2.id]);
    assert!(list(available.clone().handler("nobody")).await.is_empty());
    let dead = ListParams::new(TaskState::Dead);
    assert_eq!(list(dead.clone().limit(1)).await, vec![d1.id]);
    assert_eq!(list(dead.clone().limit(1).after(d1.id)).await, vec![d2.id]);
    assert!(list(dead.clone().after(d2.id)).await.is_empty());
    let whole = k.list_kept(&dead.clone().limit(1)).await.expect("list");
    assert_eq!(whole, vec![d1.clone()], "listed whole");
    // Kept again in another state: moved, keeping its place in the order.
    let mut running = a1.clone();
    running.state = TaskState::Running;
    running.attempts = 1;
    k.keep(&[running.clone()], Retention::default())
        .await
        .expect("keep");
    assert_eq!(list(available.clone()).await, vec![a2.id]);
    assert_eq!(list(ListParams::new(TaskState::Running)).await, vec![a1.id]);
    let counts = |stats: Vec<conveyor_core::QueueStats>| {
        stats
            .into_iter()
            .map(|q| (q.queue, q.counts.into_iter().collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    let default = conveyor_core::DEFAULT_QUEUE.to_string();
    assert_eq!(
        counts(k.kept_stats().await.expect("kept stats")),
        vec![
            (
                default.clone(),
                vec![
                    (TaskState::Running, 1),
                    (TaskState::Completed, 1),
                    (TaskState::Dead, 2)
                ]
            ),
            ("other".to_string(), vec![(TaskState::Available, 1)]),
        ]
    );
    // The keeper's own listing and counts see its own task alone.
    if let Ok(inspection) = b.inspection() {
        let listed = inspection.list(&available).await.expect("list");
        assert_eq!(ids(listed), vec![own]);
        let counted = all_counted(inspection).await;
        assert_eq!(counted, 1, "kept records are counted as the keeper's own");
    }
    // Forgotten, purged, expired: out of the listing and the counts.
    k.forget(&[d2.id]).await.expect("forget");
    assert_eq!(list(dead.clone()).await, vec![d1.id]);
    let gone_cursor = k.list_kept(&dead.clone().after(d2.id)).await;
    assert!(
        gone_cursor.is_err(),
        "a cursor no longer kept: {gone_cursor:?}"
    );
    assert_eq!(
        k.purge_kept(TaskState::Dead, Some("nowhere"))
            .await
            .expect("purge"),
        0
    );
    assert_eq!(k.purge_kept(TaskState::Dead, None).await.expect("purge"), 1);
    assert_eq!(read(&b, d1.id).await, None);
    assert!(list(dead.clone()).await.is_empty());
    assert_eq!(
        get(&b, own).await.state,
        TaskState::Available,
        "own task kept"
    );
    let short = Retention {
        finished: Duration::from_secs(60),
        dead: Duration::from_secs(60),
    };
    let brief = record(kept_id(11), TaskState::Dead, now);
    k.keep(std::slice::from_ref(&brief), short)
        .await
        .expect("keep");
    assert_eq!(list(dead.clone()).await, vec![brief.id]);
    clock.advance(Duration::from_secs(61));
    assert!(
        list(dead.clone()).await.is_empty(),
        "an expired record is listed"
    );
    let dead_left: u64 = k
        .kept_stats()
        .await
        .expect("kept stats")
        .iter()
        .map(|q| q.count(TaskState::Dead))
        .sum();
    assert_eq!(dead_left, 0, "an expired record is counted");
    assert_eq!(
        read(&b, brief.id).await,
        None,
        "expired records are dropped"
    );
}

/// Every task `inspection`'s stats count, in every queue and state.
async fn all_counted(inspection: &dyn conveyor_core::Inspection) -> u64 {
    inspection
        .stats()
        .await
        .expect("stats")
        .iter()
        .map(|q| q.counts.values().sum::<u64>())
        .sum()
}

/// Kept entries: created once, swapped only at the revision read (one of
/// two racing writers wins), put whatever is there, listed by key prefix
/// (nothing else), removed; counters hand out fresh ids to racing callers.
pub async fn kept_entries_change_only_at_their_revision(b: Subject, _clock: Arc<ManualClock>) {
    use conveyor_core::EntryWrite;
    let k = keeper(&b);
    assert_eq!(k.kept_entry("f.1").await.expect("read"), None);
    let rev = k
        .write_entry("f.1", b"one", EntryWrite::Create)
        .await
        .expect("create")
        .expect("created");
    assert_eq!(
        k.write_entry("f.1", b"again", EntryWrite::Create)
            .await
            .expect("create"),
        None,
        "created once"
    );
    let swapped = k
        .write_entry("f.1", b"two", EntryWrite::Swap(rev))
        .await
        .expect("swap")
        .expect("at its revision");
    assert!(swapped > rev, "revisions grow");
    assert_eq!(
        k.write_entry("f.1", b"stale", EntryWrite::Swap(rev))
            .await
            .expect("swap"),
        None,
        "not at a revision moved on"
    );
    assert_eq!(
        k.kept_entry("f.1").await.expect("read"),
        Some((b"two".to_vec(), swapped))
    );
    // Two writers from the same read: one wins.
    let (a, c) = tokio::join!(
        k.write_entry("f.1", b"a", EntryWrite::Swap(swapped)),
        k.write_entry("f.1", b"c", EntryWrite::Swap(swapped))
    );
    let won = [a.expect("swap"), c.expect("swap")];
    assert_eq!(won.iter().flatten().count(), 1, "one of two racing swaps");
    let put = k
        .write_entry("fd.1.0", &[0, 255, 7], EntryWrite::Put)
        .await
        .expect("put")
        .expect("always");
    k.write_entry("f.22", b"x", EntryWrite::Put)
        .await
        .expect("put");
    let mut listed: Vec<String> = k
        .kept_entries("f.")
        .await
        .expect("scan")
        .into_iter()
        .map(|(key, _, _)| key)
        .collect();
    listed.sort();
    assert_eq!(listed, ["f.1", "f.22"], "by prefix, nothing else");
    assert_eq!(
        k.kept_entry("fd.1.0").await.expect("read"),
        Some((vec![0, 255, 7], put)),
        "bytes as written"
    );
    k.remove_entry("f.1").await.expect("remove");
    k.remove_entry("f.1")
        .await
        .expect("removing twice is nothing");
    assert_eq!(k.kept_entry("f.1").await.expect("read"), None);
    assert_eq!(k.kept_entries("f.1").await.expect("scan"), vec![]);
    let firsts = futures_util::future::join_all((0..8).map(|_| k.count_up("ids", 10))).await;
    let mut firsts: Vec<u64> = firsts.into_iter().map(|r| r.expect("count")).collect();
    firsts.sort_unstable();
    for pair in firsts.windows(2) {
        assert!(pair[1] - pair[0] >= 10, "blocks never overlap: {firsts:?}");
    }
}
