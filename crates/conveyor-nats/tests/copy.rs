//! The record copy an enqueue puts in a task's first ready message: a
//! reserver acts on it only while it is still the record (its
//! compare-and-set names the copy's revision), so a task changed since
//! its enqueue is decided on the record itself; big records ride without
//! a copy and read the ledger.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Finish, ManualClock, NewTask, ReserveParams, TaskState, DEFAULT_QUEUE};

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_after_its_enqueue_is_not_reserved_from_the_copy() {
    let clock = Arc::new(ManualClock::default());
    let b = common::scoped(common::fresh(clock).await);
    let queue = vec![DEFAULT_QUEUE.to_string()];
    let cancelled = b
        .enqueue(NewTask::new("gone", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    let kept = b
        .enqueue(NewTask::new("kept", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    b.cancel(cancelled).await.expect("cancel");
    let got = b
        .reserve(ReserveParams::new(&queue, 10, LEASE))
        .await
        .expect("reserve");
    let ids: Vec<_> = got.iter().map(|t| t.lease.id).collect();
    assert_eq!(ids, vec![kept]);
    let rec = b.get(cancelled).await.expect("get").expect("record");
    assert_eq!(rec.state, TaskState::Cancelled);
    // The reservation made from the copy is a real lease: it settles.
    let out = b
        .finish(vec![Finish::complete(got[0].lease.clone())])
        .await
        .expect("finish");
    assert!(out[0].is_ok());
    assert!(b
        .reserve(ReserveParams::new(&queue, 10, LEASE))
        .await
        .expect("reserve")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_record_rides_without_a_copy() {
    let clock = Arc::new(ManualClock::default());
    let b = common::scoped(common::fresh(clock).await);
    let queue = vec![DEFAULT_QUEUE.to_string()];
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    b.enqueue(NewTask::new("big", payload.clone()))
        .await
        .expect("enqueue");
    let got = b
        .reserve(ReserveParams::new(&queue, 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, payload);
}
