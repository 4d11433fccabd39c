//! `stats` and `list` without per-state id indexes for available, completed
//! and cancelled tasks: available tasks are read from the ready set's
//! priority bands and the parked set, finished ones from per-queue sets by
//! finish time. Counts, order and the oldest ready time must stay exact.

mod common;

use conveyor_core::parts::*;
use std::time::Duration;

use common::Namespace;
use conveyor_core::{Backend, Clock, Finish, FinishAction, ListParams, NewTask, TaskId, TaskState};

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
    let got = b.reserve(&queue(), 100, LEASE).await.expect("reserve");
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
    let next = b.reserve(&queue(), 100, LEASE).await.expect("reserve");
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
    let got = b.reserve(&queue(), 4, LEASE).await.expect("reserve");
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
