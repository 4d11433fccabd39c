//! Enqueue, reserve, complete; order; delays; queues; concurrency.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{FinishAction, ManualClock, ReserveParams, TaskState};

use conveyor_core::Clock;

use super::*;

/// Tasks come back in enqueue order with their payload, attempt 1 and a lease;
/// a completed task is never reserved again.
pub async fn enqueue_reserve_complete(b: Subject, clock: Arc<ManualClock>) {
    let a = enqueue(&b, task("a")).await;
    let c = enqueue(&b, task("c").timeout(Duration::from_secs(7))).await;
    assert_ne!(a, c);
    assert_eq!(state(&b, a).await, TaskState::Available);
    let got = reserve(&b, 10).await;
    assert_eq!(ids(&got), vec![a, c]);
    let first = &got[0];
    assert_eq!(first.handler, "a");
    assert_eq!(first.payload, b"{\"h\":\"a\"}".to_vec());
    assert_eq!(first.attempt, 1);
    assert_eq!(first.queue, conveyor_core::DEFAULT_QUEUE);
    assert_eq!(first.lease_until, clock.now().plus(LEASE));
    assert_eq!(got[1].timeout, Some(Duration::from_secs(7)));
    assert_eq!(state(&b, a).await, TaskState::Running);
    assert!(
        reserve(&b, 10).await.is_empty(),
        "running tasks are not reserved"
    );
    complete(&b, first.lease.clone()).await;
    let rec = get(&b, a).await;
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.finished_at, Some(clock.now()));
    assert!(reserve(&b, 10).await.is_empty());
}

/// Higher priority first; equal priorities in enqueue order; `max` is honoured.
pub async fn priority_then_enqueue_order(b: Subject, _clock: Arc<ManualClock>) {
    let p0 = enqueue(&b, task("p0")).await;
    let p5a = enqueue(&b, task("p5a").priority(5)).await;
    let p1 = enqueue(&b, task("p1").priority(1)).await;
    let p5b = enqueue(&b, task("p5b").priority(5)).await;
    let neg = enqueue(&b, task("neg").priority(-3)).await;
    assert_eq!(ids(&reserve(&b, 2).await), vec![p5a, p5b]);
    assert_eq!(ids(&reserve(&b, 10).await), vec![p1, p0, neg]);
}

/// A delayed task is scheduled, invisible until the clock passes its time, then
/// reserved; `run_at` works the same way.
pub async fn delays_follow_the_clock(b: Subject, clock: Arc<ManualClock>) {
    let later = enqueue(&b, task("later").delay(Duration::from_secs(10))).await;
    let at = enqueue(
        &b,
        task("at").run_at(clock.now().plus(Duration::from_secs(20))),
    )
    .await;
    let now = enqueue(&b, task("now")).await;
    assert_eq!(state(&b, later).await, TaskState::Scheduled);
    assert_eq!(ids(&reserve(&b, 10).await), vec![now]);
    clock.advance(Duration::from_secs(9));
    assert!(reserve(&b, 10).await.is_empty(), "not due yet");
    clock.advance(Duration::from_secs(1));
    let got = reserve(&b, 10).await;
    assert_eq!(ids(&got), vec![later], "due exactly at its time");
    assert_eq!(got[0].due_at, get(&b, later).await.run_at);
    clock.advance(Duration::from_secs(15));
    assert_eq!(ids(&reserve(&b, 10).await), vec![at]);
}

/// Queues are separate and scanned in the order given.
pub async fn queues_are_separate(b: Subject, _clock: Arc<ManualClock>) {
    let low = enqueue(&b, task("l").queue("low")).await;
    let high = enqueue(&b, task("h").queue("high")).await;
    assert!(
        reserve(&b, 10).await.is_empty(),
        "the default queue is empty"
    );
    let both = b
        .reserve(ReserveParams::new(
            &["high".to_string(), "low".to_string()],
            10,
            LEASE,
        ))
        .await
        .expect("reserve");
    assert_eq!(ids(&both), vec![high, low]);
    assert_eq!(both[0].queue, "high");
}

/// A result is stored with the completed task; a discard cancels the task with
/// its reason.
pub async fn results_and_discards(b: Subject, _clock: Arc<ManualClock>) {
    let a = enqueue(&b, task("a")).await;
    let d = enqueue(&b, task("d")).await;
    let got = reserve(&b, 10).await;
    report(
        &b,
        got[0].lease.clone(),
        FinishAction::Complete {
            result: Some(b"42".to_vec()),
        },
    )
    .await
    .expect("complete");
    report(
        &b,
        got[1].lease.clone(),
        FinishAction::Discard {
            reason: "not needed".into(),
        },
    )
    .await
    .expect("discard");
    assert_eq!(get(&b, a).await.result, Some(b"42".to_vec()));
    let rec = get(&b, d).await;
    assert_eq!(rec.state, TaskState::Cancelled);
    assert_eq!(rec.error.as_deref(), Some("not needed"));
    assert!(b
        .get(conveyor_core::TaskId(u64::MAX / 2))
        .await
        .expect("get")
        .is_none());
}

/// One finish call completing several tasks with results: each applied
/// report keeps its own result, a stale token and a second report for a task
/// already finished in the same call are refused without touching it, and a
/// completion with a result frees its ordering key for the next task.
pub async fn results_in_one_finish_call(b: Subject, _clock: Arc<ManualClock>) {
    let a = enqueue(&b, task("a")).await;
    let k1 = enqueue(&b, task("k1").ordering_key("k")).await;
    let k2 = enqueue(&b, task("k2").ordering_key("k")).await;
    let got = reserve(&b, 10).await;
    assert_eq!(ids(&got), vec![a, k1], "k2 waits behind k1");
    let with = |lease: &Lease, result: &str| {
        Finish::new(
            lease.clone(),
            FinishAction::Complete {
                result: Some(result.as_bytes().to_vec()),
            },
        )
    };
    let (la, lk1) = (&got[0].lease, &got[1].lease);
    let wrong = Lease::new(a, la.token.wrapping_add(1_000));
    let out = b
        .finish(vec![
            with(&wrong, "bad"),
            with(la, "ra"),
            with(lk1, "r1"),
            with(lk1, "again"),
        ])
        .await
        .expect("finish (store)");
    let applied: Vec<bool> = out.iter().map(Result::is_ok).collect();
    assert_eq!(applied, vec![false, true, true, false]);
    assert!(matches!(out[0], Err(conveyor_core::Error::StaleLease(t)) if t == a));
    assert!(matches!(out[3], Err(conveyor_core::Error::StaleLease(t)) if t == k1));
    for (id, result) in [(a, "ra"), (k1, "r1")] {
        let rec = get(&b, id).await;
        assert_eq!(rec.state, TaskState::Completed);
        assert_eq!(rec.result, Some(result.as_bytes().to_vec()));
        assert_eq!(rec.attempts, 1);
    }
    assert_eq!(
        ids(&reserve_until(&b, 1, 10).await),
        vec![k2],
        "the key is free"
    );
}

/// A large `finish` call (more reports than a backend may apply in one
/// statement or script) applies each report on its own merits, in order:
/// completions with stale tokens among valid ones, a release in the middle
/// and a second report for a task completed earlier in the same call.
pub async fn many_reports_in_one_finish_call(b: Subject, _clock: Arc<ManualClock>) {
    let n = 150;
    let tasks = (0..n).map(|i| task(&format!("t{i}"))).collect();
    b.enqueue_many(tasks).await.expect("enqueue_many");
    let got = reserve_until(&b, n, n).await;
    assert_eq!(got.len(), n, "every task reserved");
    let stale = |i: usize| i % 7 == 3;
    let released = 100;
    let mut reports: Vec<Finish> = got
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let lease = if stale(i) {
                Lease::new(r.lease.id, r.lease.token.wrapping_add(1_000))
            } else {
                r.lease.clone()
            };
            let action = if i == released {
                FinishAction::Release
            } else {
                FinishAction::Complete {
                    result: Some(format!("r{i}").into_bytes()),
                }
            };
            Finish::new(lease, action)
        })
        .collect();
    reports.push(Finish::new(
        got[0].lease.clone(),
        FinishAction::Complete {
            result: Some(b"again".to_vec()),
        },
    ));
    let out = b.finish(reports).await.expect("finish (store)");
    assert_eq!(out.len(), n + 1, "one answer per report");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(out[i].is_ok(), !stale(i), "report {i}");
        let rec = get(&b, r.lease.id).await;
        if stale(i) {
            assert!(matches!(out[i], Err(conveyor_core::Error::StaleLease(t)) if t == r.lease.id));
            assert_eq!(rec.state, TaskState::Running, "task {i} keeps its lease");
        } else if i == released {
            assert_eq!(rec.state, TaskState::Available, "task {i} was released");
        } else {
            assert_eq!(rec.state, TaskState::Completed, "task {i}");
            assert_eq!(rec.result, Some(format!("r{i}").into_bytes()), "task {i}");
        }
    }
    assert!(
        matches!(out[n], Err(conveyor_core::Error::StaleLease(t)) if t == got[0].lease.id),
        "a second report for a completed task is stale"
    );
}

/// Many reservers at once: every task is handed out exactly once. (Each
/// reserver stops when all were handed out, not at its first empty answer:
/// a broker's tasks may still be on their way to a consumer.)
pub async fn concurrent_reservers_never_share_a_task(b: Subject, _clock: Arc<ManualClock>) {
    let n = 400;
    let tasks = (0..n).map(|i| task(&format!("t{i}"))).collect();
    b.enqueue_many(tasks).await.expect("enqueue_many");
    let handed_out = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut joins = Vec::new();
    for _ in 0..8 {
        let b = b.clone();
        let handed_out = handed_out.clone();
        joins.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            use std::sync::atomic::Ordering::SeqCst;
            while handed_out.load(SeqCst) < n && tokio::time::Instant::now() < deadline {
                let got = b
                    .reserve(ReserveParams::new(&default_queue(), 7, LEASE))
                    .await
                    .expect("reserve");
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                handed_out.fetch_add(got.len(), SeqCst);
                mine.extend(got.iter().map(|r| r.lease.id));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for j in joins {
        for id in j.await.expect("reserver") {
            total += 1;
            assert!(seen.insert(id), "task {id} reserved twice");
        }
    }
    assert_eq!(total, n);
}

/// A reservation that names its handlers takes only their tasks; the others
/// stay ready, in their place, for a worker that has them (a rolling deploy:
/// the old version's workers leave the new handler's tasks alone), and an
/// ordering key's head of another handler holds its key back.
pub async fn reserve_takes_only_wanted_handlers(b: Subject, _clock: Arc<ManualClock>) {
    let old = enqueue(&b, task("old")).await;
    let new = enqueue(&b, task("new")).await;
    let old2 = enqueue(&b, task("old")).await;
    let keyed_new = enqueue(&b, task("new").ordering_key("k")).await;
    let keyed_old = enqueue(&b, task("old").ordering_key("k")).await;
    let mine = vec!["old".to_string(), "other".to_string()];
    let queues = default_queue();
    let got = b
        .reserve(ReserveParams::new(&queues, 10, LEASE).handlers(&mine))
        .await
        .expect("reserve");
    assert_eq!(
        ids(&got),
        vec![old, old2],
        "only the wanted handler's, in order"
    );
    assert_eq!(state(&b, new).await, TaskState::Available);
    assert_eq!(
        state(&b, keyed_old).await,
        TaskState::Available,
        "behind its key's head"
    );
    let theirs = vec!["new".to_string()];
    let got = b
        .reserve(ReserveParams::new(&queues, 10, LEASE).handlers(&theirs))
        .await
        .expect("reserve");
    assert_eq!(ids(&got), vec![new, keyed_new]);
    assert_eq!(got[0].attempt, 1, "left alone before: no attempt spent");
}

/// On every backend, a store or a broker: a reservation that names its
/// handlers never hands out another handler's task, and that task, left
/// alone, is reserved by one naming its handler with no attempt spent. (A
/// broker may send it round a short delay meanwhile, so this waits for it
/// in real time, up to 10 s.)
pub async fn unwanted_handlers_wait_unspent(b: Subject, _clock: Arc<ManualClock>) {
    let old = enqueue(&b, task("old")).await;
    let new = enqueue(&b, task("new")).await;
    let old2 = enqueue(&b, task("old")).await;
    let mine = vec!["old".to_string(), "other".to_string()];
    let theirs = vec!["new".to_string()];
    let got = reserve_with_until(&b, &mine, 2).await;
    let mut got_ids = ids(&got);
    got_ids.sort();
    let mut want = vec![old, old2];
    want.sort();
    assert_eq!(got_ids, want, "only the wanted handler's tasks");
    let got = reserve_with_until(&b, &theirs, 1).await;
    assert_eq!(
        ids(&got),
        vec![new],
        "the other handler's task, for its worker"
    );
    assert_eq!(got[0].attempt, 1, "left alone before: no attempt spent");
}

/// Reserves with `handlers` named until `want` tasks came (or 10 s passed).
async fn reserve_with_until(b: &Subject, handlers: &[String], want: usize) -> Vec<Reserved> {
    let queues = default_queue();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut got: Vec<Reserved> = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        let more = b
            .reserve(ReserveParams::new(&queues, 10, LEASE).handlers(handlers))
            .await
            .expect("reserve");
        for r in &more {
            assert!(
                handlers.contains(&r.handler),
                "a reservation for {handlers:?} handed out a task of {:?}",
                r.handler
            );
        }
        if more.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        got.extend(more);
    }
    got
}
