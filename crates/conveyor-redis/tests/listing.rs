//! `stats` and `list` without per-state id indexes for available, completed
//! and cancelled tasks: available tasks are read from the ready set's
//! priority bands and the parked set, finished ones from per-queue lists in
//! finished-at order. Counts, order, paging and the oldest ready time must
//! stay exact.

mod common;

use conveyor_core::parts::*;
use std::time::Duration;

use common::Namespace;
use conveyor_core::{
    Backend, Clock, Finish, FinishAction, ListParams, NewTask, ReserveParams, TaskId, TaskRecord,
    TaskState, Timestamp,
};
use conveyor_testkit::conformance::page_through;

const LEASE: Duration = Duration::from_secs(30);

fn queue() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

fn ids(records: &[conveyor_core::TaskRecord]) -> Vec<u64> {
    records.iter().map(|r| r.id.0).collect()
}

async fn count(b: &dyn Backend, s: TaskState) -> u64 {
    let stats = b.stats().await.expect("stats");
    stats.iter().map(|q| q.count(s)).sum()
}

/// Available tasks of several priorities and parked ones (waiting behind
/// their ordering key's head) count, list lowest id first and give the oldest
/// ready time, before and after some of them run.
#[tokio::test]
async fn available_tasks_count_and_list_across_priorities_and_parked_ones() {
    let (ns, clock) = Namespace::manual().await;
    let b = &ns.backend;
    let start = clock.now();
    let mut enqueued = Vec::new();
    // Ids 1..=9: priorities 5, -3, 0 in turn; ids 3, 6, 9 (priority 0) share
    // key "k".
    for i in 1..=9u64 {
        let mut t = NewTask::new("h", b"x".to_vec()).priority([0, 5, -3][(i % 3) as usize]);
        if i % 3 == 0 {
            t = t.ordering_key("k");
        }
        enqueued.push(b.enqueue(t).await.expect("enqueue").id);
        clock.advance(Duration::from_millis(10));
    }
    assert_eq!(enqueued, (1..=9).map(TaskId).collect::<Vec<_>>());
    assert_eq!(count(b, TaskState::Available).await, 9);
    let listed = b
        .list(&ListParams::new(TaskState::Available).limit(4))
        .await
        .expect("list");
    assert_eq!(ids(&listed), vec![1, 2, 3, 4]);
    let all = b
        .list(&ListParams::new(TaskState::Available).limit(100))
        .await
        .expect("list");
    assert_eq!(ids(&all), (1..=9).collect::<Vec<_>>());
    let stats = b.stats().await.expect("stats");
    assert_eq!(stats[0].oldest_ready, Some(start));

    // Highest priority first: 1, 4, 7 (priority 5), then 3 (0, the head of
    // "k"; 6 and 9 wait behind it, parked), then 2, 5, 8 (-3).
    let got = b
        .reserve(ReserveParams::new(&queue(), 100, LEASE))
        .await
        .expect("reserve");
    let got_ids: Vec<u64> = got.iter().map(|r| r.lease.id.0).collect();
    assert_eq!(got_ids, vec![1, 4, 7, 3, 2, 5, 8]);
    assert_eq!(count(b, TaskState::Available).await, 2);
    assert_eq!(count(b, TaskState::Running).await, 7);
    let parked = b
        .list(&ListParams::new(TaskState::Available).limit(10))
        .await
        .expect("list");
    assert_eq!(ids(&parked), vec![6, 9]);
    let stats = b.stats().await.expect("stats");
    assert_eq!(
        stats[0].oldest_ready,
        Some(start.plus(Duration::from_millis(50)))
    );

    // Finishing the head lets the next task of its key run; the one behind it
    // stays parked.
    let head = got
        .iter()
        .find(|r| r.lease.id.0 == 3)
        .expect("task 3")
        .lease
        .clone();
    let reports = vec![Finish::complete(head)];
    assert!(b.finish(reports).await.expect("finish")[0].is_ok());
    let next = b
        .reserve(ReserveParams::new(&queue(), 100, LEASE))
        .await
        .expect("reserve");
    assert_eq!(
        next.iter().map(|r| r.lease.id.0).collect::<Vec<_>>(),
        vec![6]
    );
    assert_eq!(count(b, TaskState::Available).await, 1);
    assert_eq!(
        ids(&b
            .list(&ListParams::new(TaskState::Available).limit(10))
            .await
            .expect("list")),
        vec![9]
    );

    // Cancelling a parked task takes it out of the count.
    assert_eq!(
        b.cancel(TaskId(9)).await.expect("cancel"),
        TaskState::Cancelled
    );
    assert_eq!(count(b, TaskState::Available).await, 0);
    assert!(b.stats().await.expect("stats")[0].oldest_ready.is_none());
}

/// Completed and cancelled tasks count exactly and list earliest finished
/// first; pruning deletes them by finish time.
#[tokio::test]
async fn finished_tasks_list_by_finish_time_and_prune() {
    let (ns, clock) = Namespace::manual().await;
    let b = &ns.backend;
    for _ in 0..4 {
        b.enqueue(NewTask::new("h", b"x".to_vec()))
            .await
            .expect("enqueue");
    }
    let got = b
        .reserve(ReserveParams::new(&queue(), 4, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 4);
    // Finish 4, then 2, then 1 (each later), and cancel 3.
    for id in [4u64, 2, 1] {
        let lease = got
            .iter()
            .find(|r| r.lease.id.0 == id)
            .expect("task")
            .lease
            .clone();
        let reports = vec![Finish::complete(lease)];
        assert!(b.finish(reports).await.expect("finish")[0].is_ok());
        clock.advance(Duration::from_secs(1));
    }
    let lease = got
        .iter()
        .find(|r| r.lease.id.0 == 3)
        .expect("task")
        .lease
        .clone();
    let reports = vec![Finish::new(
        lease,
        FinishAction::Discard {
            reason: "no".into(),
        },
    )];
    assert!(b.finish(reports).await.expect("finish")[0].is_ok());
    assert_eq!(count(b, TaskState::Completed).await, 3);
    assert_eq!(count(b, TaskState::Cancelled).await, 1);
    let done = b
        .list(&ListParams::new(TaskState::Completed).limit(2))
        .await
        .expect("list");
    assert_eq!(ids(&done), vec![4, 2]);
    let cancelled = b
        .list(&ListParams::new(TaskState::Cancelled).limit(10))
        .await
        .expect("list");
    assert_eq!(ids(&cancelled), vec![3]);

    // Tasks 4 and 2 finished more than 1.5 s ago; 1 and 3 did not.
    let keep = conveyor_core::Retention {
        finished: Duration::from_millis(1500),
        dead: Duration::from_secs(3600),
    };
    assert_eq!(b.prune(keep).await.expect("prune"), 2);
    assert_eq!(
        ids(&b
            .list(&ListParams::new(TaskState::Completed).limit(10))
            .await
            .expect("list")),
        vec![1]
    );
    assert_eq!(count(b, TaskState::Cancelled).await, 1);
}

/// Every task listed by `params`, a `page` at a time, as records.
async fn all_pages(b: &dyn Backend, params: &ListParams, page: usize) -> Vec<TaskRecord> {
    let mut out = Vec::new();
    let mut next = Some(params.clone().limit(page));
    while let Some(p) = next {
        let got = b.list(&p).await.expect("list");
        assert!(got.len() <= page);
        out.extend(got.iter().cloned());
        next = p.next_page(&got);
    }
    out
}

/// Completed tasks of three queues, finished interleaved, several in the same
/// millisecond, one by a worker whose clock lags: every list stays in
/// finished-at order (the lagging finish takes the list's last finished-at),
/// and paging in small pages both ways returns each task once, by finished-at,
/// then queue name, then finish order.
#[tokio::test]
async fn finished_tasks_page_by_finished_at_queue_and_place() {
    let (ns, clock) = Namespace::manual().await;
    let b = &ns.backend;
    let queues = ["qa", "qb", "qc"];
    let mut leases = Vec::new();
    for i in 0..30 {
        let q = queues[i % 3];
        b.enqueue(NewTask::new("h", b"x".to_vec()).queue(q))
            .await
            .expect("enqueue");
        let got = b
            .reserve(ReserveParams::new(&[q.to_string()], 1, LEASE))
            .await
            .expect("reserve");
        leases.push(got[0].lease.clone());
    }
    // Finish in a shuffled order, two or three at a time per millisecond.
    let mut order: Vec<usize> = (0..30).collect();
    fastrand::Rng::with_seed(7).shuffle(&mut order);
    for (n, i) in order.iter().enumerate() {
        if n % 3 == 0 {
            clock.advance(Duration::from_millis(1));
        }
        let reports = vec![Finish::complete(leases[*i].clone())];
        assert!(b.finish(reports).await.expect("finish")[0].is_ok());
    }
    // A worker whose clock is a second behind finishes one more in qb.
    b.enqueue(NewTask::new("h", b"x".to_vec()).queue("qb"))
        .await
        .expect("enqueue");
    let late = b
        .reserve(ReserveParams::new(&["qb".to_string()], 1, LEASE))
        .await
        .expect("reserve")[0]
        .lease
        .clone();
    let now = clock.now();
    clock.set(Timestamp(now.0 - 1000));
    assert!(b
        .finish(vec![Finish::complete(late.clone())])
        .await
        .expect("finish")[0]
        .is_ok());
    clock.set(now);
    let rec = b.get(late.id).await.expect("get").expect("task");
    assert_eq!(
        rec.finished_at,
        Some(now),
        "a lagging clock takes the list's last time"
    );

    let all = b
        .list(&ListParams::new(TaskState::Completed).limit(1000))
        .await
        .expect("list");
    assert_eq!(all.len(), 31);
    let key = |r: &TaskRecord| (r.finished_at, r.queue.clone());
    for w in all.windows(2) {
        assert!(
            key(&w[0]) <= key(&w[1]),
            "{:?} before {:?}",
            key(&w[0]),
            key(&w[1])
        );
    }
    let want: Vec<TaskId> = all.iter().map(|r| r.id).collect();
    for page in [1, 4, 7] {
        let p = ListParams::new(TaskState::Completed);
        assert_eq!(page_through(b, &p, page).await, want, "pages of {page}");
        let mut back = want.clone();
        back.reverse();
        assert_eq!(
            page_through(b, &p.clone().newest_first(), page).await,
            back,
            "newest first, pages of {page}"
        );
        // One queue: its tasks in the same order.
        let qb: Vec<TaskId> = all
            .iter()
            .filter(|r| r.queue == "qb")
            .map(|r| r.id)
            .collect();
        assert_eq!(page_through(b, &p.clone().queue("qb"), page).await, qb);
    }

    // After a pruned cursor: oldest first goes on from the oldest task left,
    // newest first has nothing older.
    let cut = all[10].finished_at.expect("finished");
    let keep = conveyor_core::Retention {
        finished: Duration::from_millis((clock.now().0 - cut.0) as u64),
        dead: Duration::from_secs(3600),
    };
    // Everything finished before all[10] goes: a prefix of the order.
    let pruned = b.prune(keep).await.expect("prune") as usize;
    assert!((1..=10).contains(&pruned), "pruned {pruned}");
    for r in &all[..pruned] {
        assert!(r.finished_at < Some(cut));
    }
    let gone = all[pruned - 1].id;
    assert!(b.get(gone).await.expect("get").is_none());
    let p = ListParams::new(TaskState::Completed)
        .after(gone)
        .limit(1000);
    assert_eq!(
        all_pages(b, &p, 1000)
            .await
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        want[pruned..].to_vec()
    );
    assert!(b.list(&p.newest_first()).await.expect("list").is_empty());
}

/// A handler filter over more tasks than one script call looks at (1000)
/// still fills the page: the backend calls again from where it stopped.
#[tokio::test]
async fn a_handler_filter_reaches_past_one_calls_budget() {
    let (ns, _clock) = Namespace::manual().await;
    let b = &ns.backend;
    let mut rare = Vec::new();
    for i in 0..2600u32 {
        let handler = if i % 1000 == 999 || i == 2599 {
            "rare"
        } else {
            "common"
        };
        let id = b
            .enqueue(NewTask::new(handler, b"x".to_vec()).priority((i % 3) as i32))
            .await
            .expect("enqueue")
            .id;
        if handler == "rare" {
            rare.push(id);
        }
    }
    assert_eq!(rare.len(), 3);
    let p = ListParams::new(TaskState::Available).handler("rare");
    assert_eq!(
        listed_ids(&b.list(&p.clone().limit(10)).await.expect("list")),
        rare
    );
    assert_eq!(page_through(b, &p, 1).await, rare);
    let mut back = rare.clone();
    back.reverse();
    assert_eq!(page_through(b, &p.newest_first(), 2).await, back);
}

fn listed_ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}

/// Available tasks parked behind their ordering key's head page by id with
/// the ready ones.
#[tokio::test]
async fn parked_tasks_page_with_ready_ones() {
    let (ns, _clock) = Namespace::manual().await;
    let b = &ns.backend;
    let mut want = Vec::new();
    for i in 0..20u32 {
        let mut t = NewTask::new("h", b"x".to_vec()).priority((i % 4) as i32);
        if i % 3 == 0 {
            t = t.ordering_key("k");
        }
        want.push(b.enqueue(t).await.expect("enqueue").id);
    }
    let p = ListParams::new(TaskState::Available);
    assert_eq!(page_through(b, &p, 3).await, want);
    want.reverse();
    assert_eq!(page_through(b, &p.newest_first(), 3).await, want);
}
