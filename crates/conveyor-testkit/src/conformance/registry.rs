//! The worker registry: a heartbeat inserts or replaces a worker's entry,
//! listing filters by heartbeat time, newest first, and forgetting removes
//! entries older than a time.

use std::sync::Arc;

use conveyor_core::{ManualClock, Timestamp, WorkerInfo};

use super::*;

fn worker(id: &str, at: i64) -> WorkerInfo {
    let mut w = WorkerInfo::new(id, "host-a", 4242, Timestamp(at));
    w.version = "0.1.0".into();
    w.queues = vec!["default".into(), "mail".into()];
    w.slots = 8;
    w
}

/// Heartbeats replace, listings filter and order, old entries are forgotten.
pub async fn workers_register_by_heartbeat(b: Subject, _clock: Arc<ManualClock>) {
    let reg = b.registry().expect("the registry part");
    assert!(reg.workers(Timestamp(0)).await.expect("list").is_empty());
    let mut a = worker("host-a:1:aa", 1_000);
    reg.heartbeat(&a).await.expect("heartbeat");
    reg.heartbeat(&worker("host-a:2:bb", 2_000))
        .await
        .expect("heartbeat");
    a.heartbeat_at = Timestamp(3_000);
    a.running = 5;
    a.reserved = 7;
    a.completed = 11;
    reg.heartbeat(&a)
        .await
        .expect("a second heartbeat replaces the first");
    let all = reg.workers(Timestamp(0)).await.expect("list");
    let ids: Vec<&str> = all.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        ids,
        ["host-a:1:aa", "host-a:2:bb"],
        "most recent heartbeat first"
    );
    assert_eq!(all[0], a, "the entry reads back as written");
    let recent = reg.workers(Timestamp(2_500)).await.expect("list");
    assert_eq!(recent.len(), 1, "only heartbeats at or after the time");
    let mut stopped = a.clone();
    stopped.stopped = true;
    stopped.heartbeat_at = Timestamp(4_000);
    reg.heartbeat(&stopped).await.expect("the last heartbeat");
    assert!(reg.workers(Timestamp(0)).await.expect("list")[0].stopped);
    assert_eq!(
        reg.forget_workers(Timestamp(2_001)).await.expect("forget"),
        1
    );
    let left = reg.workers(Timestamp(0)).await.expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, "host-a:1:aa");
}
