//! Tasks stored by a version before the packed record (max attempts,
//! created-at, timeout, trace and payload as fields of their own instead of
//! one packed `d`) are read, run, retried, dead-lettered, recovered and
//! counted exactly as tasks stored now.

mod common;

use std::time::Duration;

use common::{redis_url, Namespace};
use conveyor_core::parts::*;
use conveyor_core::{
    Backend, Clock, Finish, FinishAction, NewTask, TaskId, TaskState, Timestamp, TraceContext,
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
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}t:{id}"))
        .arg(&[
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
        ])
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
        .reserve(&default_queue(), 10, LEASE)
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
        .reserve(&default_queue(), 10, LEASE)
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
}
