//! Global per-handler limits: concurrency and rate held by `reserve` for every
//! reserver, without blocking or reordering other tasks.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{HandlerLimits, ManualClock, Rate, TaskId};

use super::*;

async fn set(b: &Subject, handler: &str, limits: HandlerLimits) {
    b.set_limits(handler, limits).await.expect("set_limits");
}

/// A handler at its concurrency limit has its tasks skipped (they stay ready,
/// in order) while other handlers' tasks, older or newer, are reserved; a
/// finished or expired task frees its slot; the last `set_limits` wins, and
/// limits with no limit remove them. The kept counts follow the limited
/// reservations.
pub async fn handler_concurrency_limits(b: Subject, clock: Arc<ManualClock>) {
    set(&b, "lim", HandlerLimits::none().concurrency(1)).await;
    set(&b, "lim", HandlerLimits::none().concurrency(2)).await;
    assert_eq!(
        b.limits().await.expect("limits"),
        vec![("lim".to_string(), HandlerLimits::none().concurrency(2))],
        "the last writer wins"
    );
    assert!(
        b.set_limits("lim", HandlerLimits::none().concurrency(0))
            .await
            .is_err(),
        "a zero limit is refused"
    );
    let a = enqueue(&b, task("lim")).await;
    let bb = enqueue(&b, task("lim")).await;
    let c = enqueue(&b, task("lim")).await;
    let f = enqueue(&b, task("free")).await;
    let d = enqueue(&b, task("lim")).await;
    let got = reserve(&b, 10).await;
    assert_eq!(
        ids(&got),
        vec![a, bb, f],
        "two of lim, and free behind them"
    );
    assert!(reserve(&b, 10).await.is_empty(), "lim is full");
    super::search::recount(&*b, "after reservations under a limit").await;
    let g = enqueue(&b, task("free")).await;
    assert_eq!(ids(&reserve(&b, 10).await), vec![g], "others still run");
    complete(&b, got[0].lease.clone()).await;
    assert_eq!(
        ids(&reserve(&b, 10).await),
        vec![c],
        "a finished task frees one slot, for lim's oldest ready task"
    );
    assert!(reserve(&b, 10).await.is_empty());

    // Every lease runs out: b and c come back, and both slots are free again.
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(b.recover_expired().await.expect("recover"), 4);
    assert_eq!(
        ids(&reserve(&b, 10).await),
        vec![bb, c, f, g],
        "expired tasks free their slots; d still waits behind b and c"
    );
    super::search::recount(&*b, "after expiry under a limit").await;
    set(&b, "lim", HandlerLimits::none()).await;
    assert!(b.limits().await.expect("limits").is_empty());
    assert_eq!(ids(&reserve(&b, 10).await), vec![d], "limits removed");
}

/// Many reservers at once never run more tasks of a limited handler than its
/// concurrency, and together they fill it.
pub async fn concurrent_reservers_honour_handler_limits(b: Subject, _clock: Arc<ManualClock>) {
    const CAP: usize = 3;
    set(&b, "lim", HandlerLimits::none().concurrency(CAP as u32)).await;
    let tasks: Vec<_> = (0..20).map(|_| task("lim")).collect();
    b.enqueue_many(tasks).await.expect("enqueue");
    let mut done = 0;
    while done < 20 {
        let mut joins = Vec::new();
        for _ in 0..8 {
            let b = b.clone();
            joins.push(tokio::spawn(async move { reserve(&b, 2).await }));
        }
        let mut running = Vec::new();
        for j in joins {
            running.extend(j.await.expect("reserver"));
        }
        assert_eq!(
            running.len(),
            CAP.min(20 - done),
            "reservers together take exactly the free slots"
        );
        for r in running {
            complete(&b, r.lease).await;
            done += 1;
        }
    }
}

/// A rate of 2/s with burst 3: three start at once, the fourth only when the
/// clock has moved 500 ms, then one per 500 ms; the rate's state lives in the
/// backend, so every reserver sees it. Another handler is never held back.
pub async fn handler_rate_limits(b: Subject, clock: Arc<ManualClock>) {
    let rate = Rate::new(2, Duration::from_secs(1)).burst(3);
    set(&b, "r", HandlerLimits::none().rate(rate)).await;
    let r: Vec<TaskId> = futures_ids(&b, 6).await;
    let f = enqueue(&b, task("f")).await;
    assert_eq!(ids(&reserve(&b, 10).await), vec![r[0], r[1], r[2], f]);
    assert!(reserve(&b, 10).await.is_empty(), "burst spent");
    clock.advance(Duration::from_millis(499));
    assert!(reserve(&b, 10).await.is_empty(), "not due yet");
    clock.advance(Duration::from_millis(1));
    assert_eq!(ids(&reserve(&b, 10).await), vec![r[3]]);
    clock.advance(Duration::from_millis(1000));
    assert_eq!(ids(&reserve(&b, 10).await), vec![r[4], r[5]]);
}

async fn futures_ids(b: &Subject, n: usize) -> Vec<TaskId> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(enqueue(b, task("r")).await);
    }
    out
}
