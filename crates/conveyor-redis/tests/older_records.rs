//! Tasks stored by earlier versions run beside tasks stored now: a hash of
//! their own per task (before the namespace's record hashes), and in the
//! oldest form with max attempts, created-at, timeout, trace and payload as
//! fields of their own instead of one packed `d`. They are read, run,
//! retried, dead-lettered, recovered, listed, pruned and counted exactly as
//! tasks stored now.

mod common;

use std::time::Duration;

use common::{keys_under, redis_url, Namespace};
use conveyor_core::parts::*;
use conveyor_core::{
    Backend, Clock, Finish, FinishAction, Lease, ListParams, NewTask, ReserveParams, Retention,
    TaskId, TaskState, Timestamp, TraceContext,
};

const LEASE: Duration = Duration::from_secs(30);
const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nvendor=a b";

fn default_queue() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

/// Writes task `id` as a version before the packed record did: available,
/// in the default queue, enqueued (and due) at `created_at`.
fn store_older(
    conn: &mut redis::Connection,
    prefix: &str,
    id: u64,
    max_attempts: u32,
    created_at: i64,
) {
    let fields = [
        ("s", "1".to_string()),
        ("tk", "0".into()),
        ("q", "default".into()),
        ("h", "older".into()),
        ("a", "0".into()),
        ("p", format!("payload {id} \u{0}")),
        ("ma", max_attempts.to_string()),
        ("ca", created_at.to_string()),
        ("ra", created_at.to_string()),
        ("pr", "0".into()),
        ("to", "1500".into()),
        ("tc", TRACE.into()),
    ];
    store_hash(conn, prefix, id, &fields);
}

/// Writes task `id` as a hash of its own with `fields`, available in the
/// default queue, as the versions before the record hashes did.
fn store_hash(conn: &mut redis::Connection, prefix: &str, id: u64, fields: &[(&str, String)]) {
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}t:{id}"))
        .arg(fields)
        .query(conn)
        .expect("hset");
    let _: () = redis::cmd("ZADD")
        .arg(format!("{prefix}q:7:default:ready"))
        .arg(0)
        .arg(format!("{id:016}"))
        .query(conn)
        .expect("zadd");
    let _: () = redis::cmd("SADD")
        .arg(format!("{prefix}queues"))
        .arg("default")
        .query(conn)
        .expect("sadd");
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}seq"))
        .arg(id)
        .query(conn)
        .expect("set");
}

fn retry() -> FinishAction {
    FinishAction::Retry {
        delay: Duration::from_secs(1),
        error: "again".into(),
    }
}

async fn state(b: &conveyor_redis::RedisBackend, id: TaskId) -> TaskState {
    b.get(id).await.expect("get").expect("record").state
}

#[tokio::test]
async fn older_records_run_like_packed_ones() {
    let (ns, clock) = Namespace::manual().await;
    let b = &ns.backend;
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let start = clock.now().as_millis();
    // Two older tasks (ids 1 and 2), then two stored now (3 and 4).
    store_older(&mut conn, ns.prefix(), 1, 2, start - 5_000);
    store_older(&mut conn, ns.prefix(), 2, 1, start - 4_000);
    let trace = TraceContext::decode(TRACE).expect("trace");
    let new = |n: &str| {
        NewTask::new("newer", n.as_bytes().to_vec())
            .max_attempts(1)
            .timeout(Duration::from_millis(1_500))
            .trace(trace.clone())
    };
    let retried = b.enqueue(new("retried")).await.expect("enqueue").id;
    let expired = b.enqueue(new("expired")).await.expect("enqueue").id;
    assert_eq!((retried, expired), (TaskId(3), TaskId(4)));

    // Read back alike: the record, and the oldest ready task's age.
    let older = b.get(TaskId(1)).await.expect("get").expect("record");
    assert_eq!(older.payload, b"payload 1 \0");
    assert_eq!(older.max_attempts, 2);
    assert_eq!(older.created_at, Timestamp(start - 5_000));
    assert_eq!(older.trace.as_ref(), Some(&trace));
    let newer = b.get(retried).await.expect("get").expect("record");
    assert_eq!(
        (
            newer.payload.as_slice(),
            newer.max_attempts,
            newer.created_at
        ),
        (&b"retried"[..], 1, Timestamp(start))
    );
    assert_eq!(newer.trace.as_ref(), Some(&trace));
    let stats = b.stats().await.expect("stats");
    assert_eq!(stats[0].oldest_ready, Some(Timestamp(start - 5_000)));
    assert_eq!(stats[0].count(TaskState::Available), 4);

    // Reserved alike: every field of the reservation.
    let got = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    let ids: Vec<_> = got.iter().map(|r| r.lease.id).collect();
    assert_eq!(ids, [TaskId(1), TaskId(2), retried, expired]);
    for r in &got {
        assert_eq!(r.timeout, Some(Duration::from_millis(1_500)), "{r:?}");
        assert_eq!(r.trace.as_ref(), Some(&trace), "{r:?}");
        assert_eq!(r.attempt, 1);
    }
    assert_eq!(
        (got[0].payload.as_slice(), got[0].max_attempts),
        (&b"payload 1 \0"[..], 2)
    );
    assert_eq!(
        (got[0].enqueued_at, got[0].due_at),
        (Timestamp(start - 5_000), Timestamp(start - 5_000))
    );
    assert_eq!(
        (got[2].payload.as_slice(), got[2].max_attempts),
        (&b"retried"[..], 1)
    );
    assert_eq!(got[2].enqueued_at, Timestamp(start));

    // Retried against each one's own max attempts: the older task's 2 leave
    // it one more attempt, the newer one's 1 none.
    let reports = vec![
        Finish::new(got[0].lease.clone(), retry()),
        Finish::new(got[2].lease.clone(), retry()),
    ];
    for res in b.finish(reports).await.expect("finish") {
        res.expect("applied");
    }
    assert_eq!(state(b, TaskId(1)).await, TaskState::Retrying);
    assert_eq!(state(b, retried).await, TaskState::Dead);

    // Leases run out: tasks 2 and 4 were on their last attempt.
    clock.advance(LEASE + Duration::from_secs(1));
    b.recover_expired().await.expect("recover");
    assert_eq!(state(b, TaskId(2)).await, TaskState::Dead);
    assert_eq!(state(b, expired).await, TaskState::Dead);

    // The older task's second attempt, its last.
    let again = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].lease.id, again[0].attempt), (TaskId(1), 2));
    assert_eq!(again[0].payload, b"payload 1 \0");
    let reports = vec![Finish::new(again[0].lease.clone(), retry())];
    for res in b.finish(reports).await.expect("finish") {
        res.expect("applied");
    }
    assert_eq!(state(b, TaskId(1)).await, TaskState::Dead);

    // Purged alike: nothing of either layout is left.
    assert_eq!(b.purge_dead(Some("default")).await.expect("purge"), 4);
    for id in 1..=4 {
        assert!(b.get(TaskId(id)).await.expect("get").is_none(), "task {id}");
    }
    assert_eq!(
        keys_under(ns.prefix()),
        vec![
            format!("{}seq", ns.prefix()),
            format!("{}tokens", ns.prefix())
        ]
    );
}

/// Writes task `id` as the version before the record hashes did: a hash of
/// its own with the packed `d`, available in the default queue, with an
/// ordering key if given.
fn store_hashed(conn: &mut redis::Connection, prefix: &str, id: u64, ordering_key: Option<&str>) {
    let mut fields = vec![
        ("s", "1".to_string()),
        ("tk", "0".into()),
        ("q", "default".into()),
        ("h", "hashed".into()),
        ("a", "0".into()),
        ("d", format!("1 3 1000  0 payload {id}")),
        ("ra", "1000".into()),
        ("pr", "0".into()),
    ];
    if let Some(k) = ordering_key {
        fields.push(("ok", k.into()));
        let _: () = redis::cmd("ZADD")
            .arg(format!("{prefix}q:7:default:ord:{k}"))
            .arg(id)
            .arg(id)
            .query(conn)
            .expect("zadd");
    }
    store_hash(conn, prefix, id, &fields);
}

fn complete(lease: &conveyor_core::Lease, result: Option<&str>) -> Finish {
    Finish::new(
        lease.clone(),
        FinishAction::Complete {
            result: result.map(|r| r.as_bytes().to_vec()),
        },
    )
}

/// Tasks of per-task hashes and tasks of the record hashes in one queue:
/// reserved together, completed in one call (with and without results), an
/// ordering key handed from an older task to a newer one and back, listed
/// in finish order across both, and pruned to nothing.
#[tokio::test]
async fn hashed_records_run_beside_the_record_layout() {
    let (ns, clock) = Namespace::manual().await;
    let b = &ns.backend;
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let p = ns.prefix().to_string();
    store_hashed(&mut conn, &p, 1, Some("K"));
    store_hashed(&mut conn, &p, 2, None);
    let keyed = |n: &str| NewTask::new("newer", n.as_bytes().to_vec()).ordering_key("K");
    let t3 = b.enqueue(keyed("3")).await.expect("enqueue").id;
    let t4 = b
        .enqueue(NewTask::new("newer", b"4".to_vec()))
        .await
        .expect("enqueue")
        .id;
    assert_eq!((t3, t4), (TaskId(3), TaskId(4)));
    // Stored after 3 under the older layout, as a worker of the earlier
    // version sharing the server would.
    store_hashed(&mut conn, &p, 5, Some("K"));

    let got = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    let ids: Vec<_> = got.iter().map(|r| r.lease.id.0).collect();
    assert_eq!(ids, [1, 2, 4], "3 and 5 wait behind 1 on their key");
    assert_eq!(got[0].payload, b"payload 1");
    assert_eq!(got[0].ordering_key.as_deref(), Some("K"));
    assert_eq!(
        (got[0].handler.as_str(), got[2].handler.as_str()),
        ("hashed", "newer")
    );
    // Leases of both layouts renew; a stale token, a task never reserved
    // and an unknown id do not.
    let stale = Lease::new(got[2].lease.id, got[2].lease.token + 1_000);
    let renewed = b
        .renew(
            &[
                got[0].lease.clone(),
                got[2].lease.clone(),
                stale,
                Lease::new(t3, 0),
                Lease::new(TaskId(999), 1),
            ],
            LEASE,
        )
        .await
        .expect("renew");
    assert_eq!(renewed, [true, true, false, false, false]);
    let out = b
        .finish(vec![
            complete(&got[0].lease, Some("r1")),
            complete(&got[1].lease, None),
            complete(&got[2].lease, Some("r4")),
        ])
        .await
        .expect("finish");
    assert!(out.iter().all(Result::is_ok), "{out:?}");

    // The key passes to 3 (a newer task), then to 5 (an older one).
    clock.advance(Duration::from_secs(1));
    let got = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got.iter().map(|r| r.lease.id).collect::<Vec<_>>(), [t3]);
    let out = b
        .finish(vec![complete(&got[0].lease, Some("r3"))])
        .await
        .expect("finish");
    assert!(out[0].is_ok());
    clock.advance(Duration::from_secs(1));
    let got = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got.iter().map(|r| r.lease.id.0).collect::<Vec<_>>(), [5]);
    let out = b
        .finish(vec![complete(&got[0].lease, None)])
        .await
        .expect("finish");
    assert!(out[0].is_ok());

    for (id, result) in [
        (1, Some("r1")),
        (2, None),
        (3, Some("r3")),
        (4, Some("r4")),
        (5, None),
    ] {
        let rec = b.get(TaskId(id)).await.expect("get").expect("record");
        assert_eq!(rec.state, TaskState::Completed, "task {id}");
        assert_eq!(
            rec.result.as_deref(),
            result.map(str::as_bytes),
            "task {id}"
        );
        assert_eq!(rec.attempts, 1);
    }
    let listed = b
        .list(&ListParams::new(TaskState::Completed).limit(10))
        .await
        .expect("list");
    let order: Vec<u64> = listed.iter().map(|r| r.id.0).collect();
    // In finish order: one call applies its plain completions (2) before
    // the reports with results (1, 4).
    assert_eq!(order, [2, 1, 4, 3, 5]);

    clock.advance(Duration::from_secs(3600));
    let keep = Retention {
        finished: Duration::from_secs(60),
        dead: Duration::from_secs(600),
    };
    assert_eq!(b.prune(keep).await.expect("prune"), 5);
    assert_eq!(
        keys_under(&p),
        vec![format!("{p}seq"), format!("{p}tokens")]
    );
}

/// Dead tasks of both layouts pruned in one call once their retention
/// passed: the queue of each read from its own record, nothing left.
#[tokio::test]
async fn dead_tasks_of_both_layouts_prune_together() {
    let (ns, clock) = Namespace::manual().await;
    let b = &ns.backend;
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let p = ns.prefix().to_string();
    store_hashed(&mut conn, &p, 1, None);
    let newer = b
        .enqueue(NewTask::new("newer", b"2".to_vec()))
        .await
        .expect("enqueue")
        .id;
    let got = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 2);
    let dead = |r: &conveyor_core::Reserved| {
        Finish::new(
            r.lease.clone(),
            FinishAction::DeadLetter { error: "no".into() },
        )
    };
    let out = b
        .finish(got.iter().map(dead).collect())
        .await
        .expect("finish");
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(state(b, TaskId(1)).await, TaskState::Dead);
    assert_eq!(state(b, newer).await, TaskState::Dead);

    clock.advance(Duration::from_secs(3600));
    let keep = Retention {
        finished: Duration::from_secs(60),
        dead: Duration::from_secs(600),
    };
    assert_eq!(b.prune(keep).await.expect("prune"), 2);
    assert!(b.stats().await.expect("stats").is_empty());
    assert_eq!(
        keys_under(&p),
        vec![format!("{p}seq"), format!("{p}tokens")]
    );
}
