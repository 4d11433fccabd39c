//! Lease groups: the tasks one reserve call takes of a queue share one lease
//! entry. Finishing, renewing (all of a group, or part of it), recovering,
//! counting and listing running tasks must each see every task's own lease,
//! and leases written per task (before groups, or by a renewal of part of a
//! group) must keep working beside them.

mod common;

use conveyor_core::parts::*;
use std::time::Duration;

use common::{keys_under, redis_url, Namespace};
use conveyor_core::{
    Backend, Clock, Error, Finish, FinishAction, ListParams, NewTask, ReserveParams, Reserved,
    TaskId, TaskState, DEFAULT_QUEUE,
};
use conveyor_testkit::count_in;

const LEASE: Duration = Duration::from_secs(30);

/// A raw connection to the test Redis, to look at and tamper with keys.
fn raw() -> redis::Connection {
    redis::Client::open(redis_url())
        .expect("redis url")
        .get_connection()
        .expect("redis connection")
}

/// The name of a key of the default queue (`lua/common/names.lua`'s `queue_base`).
fn queue_key(ns: &Namespace, suffix: &str) -> String {
    format!(
        "{}q:{}:{}:{}",
        ns.prefix(),
        DEFAULT_QUEUE.len(),
        DEFAULT_QUEUE,
        suffix
    )
}

/// How many members the default queue's sorted set `suffix` holds.
fn zcard(ns: &Namespace, suffix: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(queue_key(ns, suffix))
        .query(&mut raw())
        .expect("ZCARD")
}

/// Gives task `id` a member of its own in the default queue's lease set,
/// scored `until`, as a version before lease groups wrote it.
fn own_lease(ns: &Namespace, id: TaskId, until: i64) {
    let _: u64 = redis::cmd("ZADD")
        .arg(queue_key(ns, "leases"))
        .arg(until)
        .arg(id.0.to_string())
        .query(&mut raw())
        .expect("ZADD");
}

async fn enqueue(ns: &Namespace, n: usize) -> Vec<TaskId> {
    let tasks = (0..n)
        .map(|i| NewTask::new("h", format!("{i}").into_bytes()))
        .collect();
    ns.backend
        .enqueue_many(tasks)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn reserve(ns: &Namespace, max: usize) -> Vec<Reserved> {
    ns.backend
        .reserve(ReserveParams::new(&[DEFAULT_QUEUE.to_string()], max, LEASE))
        .await
        .expect("reserve")
}

async fn finish(ns: &Namespace, reports: Vec<Finish>) -> Vec<Result<(), Error>> {
    ns.backend.finish(reports).await.expect("finish")
}

fn complete(tasks: &[Reserved]) -> Vec<Finish> {
    tasks
        .iter()
        .map(|t| Finish::complete(t.lease.clone()))
        .collect()
}

async fn running(ns: &Namespace) -> (u64, Vec<TaskId>) {
    let count = count_in(&ns.backend, TaskState::Running).await;
    let mut ids: Vec<TaskId> = ns
        .backend
        .list(&ListParams::new(TaskState::Running).limit(100))
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    (count, ids)
}

async fn state(ns: &Namespace, id: TaskId) -> TaskState {
    ns.backend
        .get(id)
        .await
        .expect("get")
        .expect("record")
        .state
}

/// The namespace's lease-group keys that exist.
fn group_keys(ns: &Namespace) -> Vec<String> {
    keys_under(ns.prefix())
        .into_iter()
        .filter(|k| k.ends_with(":gleases") || k.ends_with(":groups"))
        .collect()
}

fn ids(tasks: &[Reserved]) -> Vec<TaskId> {
    let mut ids: Vec<TaskId> = tasks.iter().map(|t| t.lease.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_reservation_is_one_group_and_finishing_all_of_it_deletes_the_group() {
    let (ns, _clock) = Namespace::manual().await;
    enqueue(&ns, 5).await;
    let got = reserve(&ns, 5).await;
    assert_eq!(got.len(), 5);
    let members = zcard(&ns, "leases");
    let groups = zcard(&ns, "gleases");
    assert_eq!(
        (members, groups),
        (0, 1),
        "one group entry, no member per task"
    );
    assert_eq!(running(&ns).await, (5, ids(&got)));

    let results = finish(&ns, complete(&got[..2])).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(running(&ns).await, (3, ids(&got[2..])));
    assert_eq!(group_keys(&ns).len(), 2, "the group lives on");

    let results = finish(&ns, complete(&got[2..])).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(running(&ns).await, (0, vec![]));
    assert_eq!(
        group_keys(&ns),
        Vec::<String>::new(),
        "an empty group is deleted"
    );
    let stale = finish(&ns, complete(&got[..1])).await;
    assert!(matches!(stale[0], Err(Error::StaleLease(_))), "{stale:?}");
}

#[tokio::test]
async fn renewing_part_of_a_group_splits_those_tasks_out_and_the_rest_expires() {
    let (ns, clock) = Namespace::manual().await;
    enqueue(&ns, 3).await;
    let got = reserve(&ns, 3).await;
    clock.advance(Duration::from_secs(20));
    let renewed = ns
        .backend
        .renew(&[got[0].lease.clone(), got[1].lease.clone()], LEASE)
        .await
        .expect("renew");
    assert_eq!(renewed, vec![true, true]);
    assert_eq!(
        running(&ns).await,
        (3, ids(&got)),
        "split out, still counted once"
    );

    // Past the group's lease (30 s), within the renewed ones' (50 s).
    clock.advance(Duration::from_secs(15));
    assert_eq!(ns.backend.recover_expired().await.expect("recover"), 1);
    assert_eq!(state(&ns, got[2].lease.id).await, TaskState::Available);
    assert_eq!(running(&ns).await, (2, ids(&got[..2])));
    assert_eq!(
        group_keys(&ns),
        Vec::<String>::new(),
        "the expired group is gone"
    );

    let results = finish(&ns, complete(&got)).await;
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(
        matches!(results[2], Err(Error::StaleLease(_))),
        "{results:?}"
    );
    assert_eq!(running(&ns).await, (0, vec![]));
    let members = zcard(&ns, "leases");
    assert_eq!(members, 0, "the split-out members went with their tasks");
}

#[tokio::test]
async fn renewing_every_live_task_of_a_group_moves_the_groups_lease() {
    let (ns, clock) = Namespace::manual().await;
    enqueue(&ns, 3).await;
    let got = reserve(&ns, 3).await;
    finish(&ns, complete(&got[..1])).await;
    clock.advance(Duration::from_secs(20));
    let leases = [got[1].lease.clone(), got[2].lease.clone()];
    let renewed = ns.backend.renew(&leases, LEASE).await.expect("renew");
    assert_eq!(renewed, vec![true, true]);
    let members = zcard(&ns, "leases");
    assert_eq!(members, 0, "no task was split out");

    clock.advance(Duration::from_secs(15));
    assert_eq!(ns.backend.recover_expired().await.expect("recover"), 0);
    assert_eq!(running(&ns).await, (2, ids(&got[1..])));
    clock.advance(Duration::from_secs(16));
    assert_eq!(ns.backend.recover_expired().await.expect("recover"), 2);
    assert_eq!(running(&ns).await, (0, vec![]));
    assert_eq!(group_keys(&ns), Vec::<String>::new());
}

#[tokio::test]
async fn an_expired_group_recovers_only_its_tasks_still_running_under_it() {
    let (ns, clock) = Namespace::manual().await;
    enqueue(&ns, 4).await;
    let first = reserve(&ns, 4).await;
    // One completes, one is released and taken again by a later call.
    let results = finish(
        &ns,
        vec![
            Finish::complete(first[0].lease.clone()),
            Finish::new(first[1].lease.clone(), FinishAction::Release),
        ],
    )
    .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    clock.advance(Duration::from_secs(10));
    let again = reserve(&ns, 4).await;
    assert_eq!(ids(&again), vec![first[1].lease.id]);

    // The first group's lease ends at 30 s, the second's at 40 s.
    clock.advance(Duration::from_secs(21));
    assert_eq!(ns.backend.recover_expired().await.expect("recover"), 2);
    assert_eq!(state(&ns, first[0].lease.id).await, TaskState::Completed);
    assert_eq!(running(&ns).await, (1, ids(&again)));
    for t in &first[2..] {
        assert_eq!(state(&ns, t.lease.id).await, TaskState::Available);
    }
    let results = finish(&ns, complete(&again)).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(group_keys(&ns), Vec::<String>::new());
}

#[tokio::test]
async fn a_leftover_member_of_a_grouped_task_does_not_expire_it() {
    let (ns, clock) = Namespace::manual().await;
    enqueue(&ns, 1).await;
    let got = reserve(&ns, 1).await;
    // As an older version's renewal would leave it: a member of its own,
    // here with a lease long over.
    own_lease(&ns, got[0].lease.id, 1);
    assert_eq!(running(&ns).await.1, ids(&got), "listed once");
    clock.advance(Duration::from_secs(1));
    assert_eq!(ns.backend.recover_expired().await.expect("recover"), 0);
    assert_eq!(state(&ns, got[0].lease.id).await, TaskState::Running);
    let members = zcard(&ns, "leases");
    assert_eq!(members, 0, "the leftover is dropped");
    assert!(finish(&ns, complete(&got)).await[0].is_ok());
}

#[tokio::test]
async fn leases_of_their_own_from_before_groups_still_finish_and_expire() {
    let (ns, clock) = Namespace::manual().await;
    enqueue(&ns, 2).await;
    let got = reserve(&ns, 2).await;
    // As a reservation made before lease groups left them: no group, a
    // member per task scored by the lease's end (30 s from the clock's start).
    let mut conn = raw();
    let _: u64 = redis::cmd("DEL")
        .arg(queue_key(&ns, "gleases"))
        .arg(queue_key(&ns, "groups"))
        .query(&mut conn)
        .expect("DEL");
    let until = clock.now().plus(LEASE).as_millis();
    for t in &got {
        own_lease(&ns, t.lease.id, until);
    }
    assert_eq!(running(&ns).await, (2, ids(&got)));
    assert!(finish(&ns, complete(&got[..1])).await[0].is_ok());
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(queue_key(&ns, "leases"))
        .arg(got[0].lease.id.0.to_string())
        .query(&mut conn)
        .expect("ZSCORE");
    assert_eq!(score, None, "its member went with it");
    assert_eq!(running(&ns).await, (1, ids(&got[1..])));
    clock.advance(Duration::from_secs(31));
    assert_eq!(ns.backend.recover_expired().await.expect("recover"), 1);
    assert_eq!(state(&ns, got[1].lease.id).await, TaskState::Available);
    assert_eq!(running(&ns).await, (0, vec![]));
}
