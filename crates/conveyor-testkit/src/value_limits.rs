//! Params and results at, just under and just over a backend's value limit
//! ([`conveyor_core::ValueLimit`]), for every backend's own tests: up to the
//! limit a value is stored and read back whole; one byte over, `enqueue` is
//! refused (the whole batch: nothing of it is stored), and so is the
//! `finish` of that one report, with a non-transient error naming both
//! sizes. A refused report leaves its task held, so the failure the worker
//! reports instead is stored; and a worker whose handler returns a result
//! too large ends the task with that refusal as its error, attempt by
//! attempt, never looping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::{Handler, TaskError, Worker};
use conveyor_core::{Backend, Error, Finish, FinishAction, NewTask, TaskState};

use crate::conformance::reserve_until;

/// The error's text, asserting it is a refusal for good that names `size`
/// and `max`.
fn refusal(e: &Error, size: usize, max: usize) -> String {
    assert!(!e.is_transient(), "a refusal for good: {e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&size.to_string()),
        "names the size {size}: {text}"
    );
    assert!(
        text.contains(&max.to_string()),
        "names the limit {max}: {text}"
    );
    text
}

/// Params and results at, under and over `max` on `store` (a fresh
/// namespace whose limit is `max`; it needs the result store part).
pub async fn values_at_the_limit(store: Arc<dyn Backend>, max: usize) {
    // Params: at and under are stored; over is refused, alone or in a batch.
    let at = store
        .enqueue(NewTask::new("big", vec![1; max]))
        .await
        .expect("params at the limit are stored")
        .id;
    let under = store
        .enqueue(NewTask::new("big", vec![2; max - 1]))
        .await
        .expect("params just under the limit are stored")
        .id;
    let e = store
        .enqueue(NewTask::new("big", vec![3; max + 1]))
        .await
        .expect_err("params one byte over the limit are refused");
    refusal(&e, max + 1, max);
    let e = store
        .enqueue_many(vec![
            NewTask::new("big", vec![4; 10]),
            NewTask::new("big", vec![5; max + 1]),
        ])
        .await
        .expect_err("a batch with params over the limit is refused");
    let text = refusal(&e, max + 1, max);
    assert!(text.contains("task 2 of 2"), "names the task: {text}");

    let got = reserve_until(&store, 3, 3).await;
    let mut ids: Vec<_> = got.iter().map(|r| r.lease.id).collect();
    ids.sort();
    let mut want = vec![at, under];
    want.sort();
    assert_eq!(
        ids, want,
        "the two that fit, and nothing of the refused batch"
    );
    for r in &got {
        let len = if r.lease.id == at { max } else { max - 1 };
        assert_eq!(r.payload.len(), len, "params read back whole");
    }

    // Results: at and under are stored, over is refused for that report
    // alone, and the refused task stays held.
    let more = store
        .enqueue_many((0..3).map(|i| NewTask::new("small", vec![i])).collect())
        .await
        .expect("enqueue");
    let held = reserve_until(&store, 3, 3).await;
    assert_eq!(held.len(), 3, "{more:?}");
    let sizes = [max, max - 1, max + 1];
    let reports = held
        .iter()
        .zip(sizes)
        .map(|(r, size)| {
            Finish::new(
                r.lease.clone(),
                FinishAction::Complete {
                    result: Some(vec![7; size]),
                },
            )
        })
        .collect();
    let out = store.finish(reports).await.expect("the call succeeds");
    out[0].as_ref().expect("a result at the limit is stored");
    out[1]
        .as_ref()
        .expect("a result just under the limit is stored");
    let e = out[2]
        .as_ref()
        .expect_err("a result one byte over the limit is refused");
    refusal(e, max + 1, max);
    for (r, size) in held.iter().zip(sizes).take(2) {
        let rec = store.get(r.lease.id).await.expect("get").expect("task");
        assert_eq!(rec.state, TaskState::Completed);
        assert_eq!(
            rec.result.as_ref().map(Vec::len),
            Some(size),
            "read back whole"
        );
    }
    let refused = &held[2];
    let failed = store
        .finish(vec![Finish::new(
            refused.lease.clone(),
            FinishAction::DeadLetter {
                error: e.to_string(),
            },
        )])
        .await
        .expect("finish")
        .remove(0);
    failed.expect("the refused task is still held: its failure is stored");
    let rec = store
        .get(refused.lease.id)
        .await
        .expect("get")
        .expect("task");
    assert_eq!(rec.state, TaskState::Dead);
    assert!(
        rec.error
            .as_deref()
            .is_some_and(|t| t.contains("cannot be stored")),
        "{:?}",
        rec.error
    );
    // Finish the rest, so the namespace holds nothing running.
    let rest: Vec<Finish> = got
        .iter()
        .map(|r| Finish::complete(r.lease.clone()))
        .collect();
    for r in store.finish(rest).await.expect("finish") {
        r.expect("complete");
    }
}

/// A worker on `store` (limit `max`) whose handler returns a result over
/// the limit: each attempt fails with the refusal as its error and the task
/// ends dead after its two attempts, not rerunning after every lease.
pub async fn a_worker_stores_the_refusal(store: Arc<dyn Backend>, max: usize) {
    let id = store
        .enqueue(NewTask::new("huge", b"0".to_vec()).max_attempts(2))
        .await
        .expect("enqueue")
        .id;
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = runs.clone();
    let worker = Worker::builder(store.clone())
        .handler(Handler::io("huge", move |_: u64, _ctx| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // JSON: the text and its two quotes, over the limit.
                Ok::<_, TaskError>("x".repeat(max))
            }
        }))
        .slots(2)
        .lease(Duration::from_secs(3))
        .build()
        .expect("worker");
    let stopper = worker.stopper();
    let running = tokio::spawn(worker.run_until(std::future::pending()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let rec = loop {
        let rec = store.get(id).await.expect("get").expect("task");
        if rec.state == TaskState::Dead {
            break rec;
        }
        assert!(
            Instant::now() < deadline,
            "the task did not end: {:?} after {} runs, error {:?}",
            rec.state,
            runs.load(std::sync::atomic::Ordering::SeqCst),
            rec.error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stopper.stop();
    let _ = running.await;
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one run per attempt"
    );
    assert_eq!(rec.attempts, 2);
    let error = rec.error.unwrap_or_default();
    assert!(error.contains("cannot be stored"), "{error}");
    assert!(error.contains(&(max + 2).to_string()), "{error}");
}
