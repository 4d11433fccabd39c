//! Params and results at, just under and just over what one record can
//! hold on this server (its `max_payload`): up to the limit they are
//! stored and read back whole; one byte over, the enqueue is refused, and
//! so is the finish of that one report, with a non-transient error that
//! names both sizes. The refused task is not dropped: it still runs under
//! its lease, and a failure reported for it (what the worker does with
//! such a refusal) is stored.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Backend, Error, Finish, FinishAction, NewTask, ReserveParams, SystemClock, TaskState,
};

fn queue() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

/// The error's text, asserting it is a non-transient refusal.
fn refusal(e: &Error) -> String {
    assert!(!e.is_transient(), "a refusal for good: {e:?}");
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_at_the_limit_are_stored_one_byte_over_refused() {
    let b = common::fresh(Arc::new(SystemClock)).await;
    let max_payload = b.max_payload();
    let shell = NewTask::new("big", Vec::new());
    let limit = b.max_params(&shell);
    assert!(limit > max_payload - 8192 && limit < max_payload, "{limit}");
    let store: Arc<dyn Backend> = common::scoped(b);

    let at = NewTask::new("big", vec![1; limit]);
    let under = NewTask::new("big", vec![2; limit - 1]);
    let ids = store.enqueue_many(vec![at, under]).await.expect("enqueue");
    let over = store
        .enqueue(NewTask::new("big", vec![3; limit + 1]))
        .await
        .expect_err("params one byte over the limit are refused");
    let text = refusal(&over);
    assert!(text.contains(&(limit + 1).to_string()), "{text}");
    assert!(text.contains(&max_payload.to_string()), "{text}");
    // Over the server's own limit too: the same refusal, not an outage.
    let way_over = store
        .enqueue(NewTask::new("big", vec![4; max_payload + 1]))
        .await
        .expect_err("params over max_payload are refused");
    let text = refusal(&way_over);
    assert!(text.contains(&(max_payload + 1).to_string()), "{text}");

    // Both stored whole, and they can be run and completed.
    let got = store
        .reserve(ReserveParams::new(&queue(), 10, Duration::from_secs(60)))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 2, "only the two that fit were enqueued");
    for r in &got {
        let want = if r.lease.id == ids[0].id {
            limit
        } else {
            limit - 1
        };
        assert_eq!(r.payload.len(), want);
    }
    let done = got
        .iter()
        .map(|r| {
            Finish::new(
                r.lease.clone(),
                FinishAction::Complete {
                    result: Some(b"ok".to_vec()),
                },
            )
        })
        .collect();
    for r in store.finish(done).await.expect("finish") {
        r.expect("a small result of a task with large params is stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_at_the_limit_are_stored_one_byte_over_refused() {
    let b = common::fresh(Arc::new(SystemClock)).await;
    let max_payload = b.max_payload();
    let store: Arc<dyn Backend> = common::scoped(b.clone());
    store
        .enqueue_many((0..4).map(|i| NewTask::new("h", vec![i])).collect())
        .await
        .expect("enqueue");
    let got = store
        .reserve(ReserveParams::new(&queue(), 4, Duration::from_secs(60)))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 4);
    let mut reports = Vec::new();
    let mut sizes = Vec::new();
    // At, just under and just over the limit, and over the server's own.
    for (r, extra) in got.iter().zip([0i64, -1, 1, 8192]) {
        let limit = b
            .max_result(&r.lease)
            .await
            .expect("max_result")
            .expect("the lease holds");
        assert!(limit > max_payload - 8192 && limit < max_payload, "{limit}");
        let size = usize::try_from(limit as i64 + extra).expect("a size");
        sizes.push((limit, size));
        reports.push(Finish::new(
            r.lease.clone(),
            FinishAction::Complete {
                result: Some(vec![7; size]),
            },
        ));
    }
    let out = store.finish(reports).await.expect("the call succeeds");
    out[0].as_ref().expect("a result at the limit is stored");
    out[1]
        .as_ref()
        .expect("a result just under the limit is stored");
    let e = out[2]
        .as_ref()
        .expect_err("a result one byte over the limit is refused");
    let text = refusal(e);
    assert!(text.contains(&sizes[2].1.to_string()), "{text}");
    assert!(text.contains(&max_payload.to_string()), "{text}");
    let e = out[3]
        .as_ref()
        .expect_err("a result over max_payload is refused");
    let text_3 = refusal(e);
    assert!(text_3.contains(&sizes[3].1.to_string()), "{text_3}");

    for (r, (_, size)) in got.iter().zip(&sizes).take(2) {
        let rec = store.get(r.lease.id).await.expect("get").expect("task");
        assert_eq!(rec.state, TaskState::Completed);
        assert_eq!(rec.result.as_ref().map(Vec::len), Some(*size));
    }
    // The refused task was not dropped: it still runs under its lease,
    // and the failure the worker reports for it instead is stored.
    let refused = &got[2];
    let rec = store
        .get(refused.lease.id)
        .await
        .expect("get")
        .expect("task");
    assert_eq!(rec.state, TaskState::Running);
    let failed = Finish::new(
        refused.lease.clone(),
        FinishAction::DeadLetter {
            error: text.clone(),
        },
    );
    for r in store.finish(vec![failed]).await.expect("finish") {
        r.expect("the failure is stored");
    }
    let rec = store
        .get(refused.lease.id)
        .await
        .expect("get")
        .expect("task");
    assert_eq!(rec.state, TaskState::Dead);
    assert_eq!(rec.error.as_deref(), Some(text.as_str()));
}
