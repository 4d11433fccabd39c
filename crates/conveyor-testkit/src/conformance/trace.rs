//! Trace contexts: the W3C context given at enqueue travels with the task,
//! unchanged, to every attempt and to what a read returns; a task enqueued
//! without one has none; a follow-up carries its own.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Finish, FinishAction, ManualClock, NewTask, ReserveParams, TraceContext};

use super::*;

/// A context with a `tracestate`.
fn full() -> TraceContext {
    TraceContext::new(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into()),
    )
    .expect("a valid context")
}

/// A context without a `tracestate`, not sampled.
fn bare() -> TraceContext {
    TraceContext::new(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        None,
    )
    .expect("a valid context")
}

/// The context given at enqueue comes back unchanged from reserve and from
/// get (where the backend reads tasks), none given gives none, and a retried
/// task keeps its context for the next attempt.
pub async fn trace_context_travels(b: Subject, _clock: Arc<ManualClock>) {
    let with = enqueue(&b, task("traced").trace(full())).await;
    let plain = enqueue(&b, task("untraced")).await;
    let bare_id = enqueue(&b, task("bare").trace(bare())).await;
    let got = reserve_until(&b, 3, 3).await;
    assert_eq!(got.len(), 3, "all three tasks come");
    let by_id = |id| {
        got.iter()
            .find(|r| r.lease.id == id)
            .unwrap_or_else(|| panic!("task {id} was reserved"))
    };
    assert_eq!(by_id(with).trace, Some(full()), "the context comes back");
    assert_eq!(by_id(plain).trace, None, "none given, none back");
    assert_eq!(
        by_id(bare_id).trace,
        Some(bare()),
        "no tracestate stays none"
    );
    if b.result_store().is_ok() {
        assert_eq!(get(&b, with).await.trace, Some(full()));
        assert_eq!(get(&b, plain).await.trace, None);
        assert_eq!(get(&b, bare_id).await.trace, Some(bare()));
    }

    // Retry the traced one; the other two complete.
    report(
        &b,
        by_id(with).lease.clone(),
        FinishAction::Retry {
            delay: Duration::ZERO,
            error: "again".into(),
        },
    )
    .await
    .expect("retry");
    complete(&b, by_id(plain).lease.clone()).await;
    complete(&b, by_id(bare_id).lease.clone()).await;
    let again = reserve_until(&b, 1, 1).await;
    assert_eq!(ids(&again), vec![with], "the retried task comes back");
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].trace, Some(full()), "a retry keeps the context");
    complete(&b, again[0].lease.clone()).await;
    if b.result_store().is_ok() {
        assert_eq!(get(&b, with).await.trace, Some(full()));
    }
}

/// Follow-ups enqueued with a finish carry their own context (or none),
/// not the finished task's.
pub async fn follow_ups_carry_their_trace_context(b: Subject, _clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("parent").trace(full())).await;
    let got = reserve_until(&b, 1, 1).await;
    assert_eq!(ids(&got), vec![id]);
    let queue = "trace-next".to_string();
    let own = NewTask::new("child-traced", b"{}".to_vec())
        .queue(queue.clone())
        .trace(bare());
    let none = NewTask::new("child-plain", b"{}".to_vec()).queue(queue.clone());
    let out = b
        .finish(vec![Finish::new(
            got[0].lease.clone(),
            FinishAction::Complete { result: None },
        )
        .with_follow_ups(vec![own, none])])
        .await
        .expect("finish (store)");
    assert!(out[0].is_ok(), "the report applies: {:?}", out[0]);
    let mut children = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while children.len() < 2 && tokio::time::Instant::now() < deadline {
        let more = b
            .reserve(ReserveParams::new(std::slice::from_ref(&queue), 2, LEASE))
            .await
            .expect("reserve");
        if more.is_empty()
            && !b
                .wait_for_work(std::slice::from_ref(&queue), Duration::from_millis(50))
                .await
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        children.extend(more);
    }
    assert_eq!(children.len(), 2, "both follow-ups come");
    for c in &children {
        let want = (c.handler == "child-traced").then(bare);
        assert_eq!(c.trace, want, "{} carries its own context", c.handler);
        if b.result_store().is_ok() {
            assert_eq!(get(&b, c.lease.id).await.trace, want);
        }
    }
}
