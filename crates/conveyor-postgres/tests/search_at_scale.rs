//! Searching a schema with more tasks than one page may read, and the kept
//! counts under concurrent writers and folds.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::parts::*;
use conveyor_core::{
    Backend, Finish, FinishAction, NewTask, ReserveParams, SystemClock, TaskState,
};
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::conformance::pages_stop_at_their_budget;
use conveyor_testkit::Scoped;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stop_at_their_budget_and_find_every_match() {
    let url = common::url();
    let backend =
        PostgresBackend::connect_with(&url, &common::fresh_schema(), Arc::new(SystemClock))
            .await
            .expect("connect to the test server");
    let schema = backend.schema().to_string();
    let b: Arc<dyn Backend> = Arc::new(Scoped::new(backend, move || {
        common::drop_schema(&url, &schema)
    }));
    pages_stop_at_their_budget(b).await;
}

/// Four workers enqueue, reserve and settle at once while the counts are
/// folded over and over: afterwards every kept count equals a recount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_counts_hold_under_concurrent_writers_and_folds() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = scoped.backend.clone();
    let queues = ["a", "b"];
    let mut workers = Vec::new();
    for w in 0..4usize {
        let b = b.clone();
        workers.push(tokio::spawn(async move {
            let queue = queues[w % 2];
            let lanes = vec![queue.to_string()];
            for round in 0..20usize {
                let batch = (0..25).map(|_| NewTask::new("h", Vec::new()).queue(queue));
                b.enqueue_many(batch.collect()).await.expect("enqueue");
                let got = b
                    .reserve(ReserveParams::new(&lanes, 20, Duration::from_secs(60)))
                    .await
                    .expect("reserve");
                let reports = got
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let action = match (i + round) % 4 {
                            0 => FinishAction::Complete { result: None },
                            1 => FinishAction::DeadLetter { error: "x".into() },
                            2 => FinishAction::Release,
                            _ => FinishAction::Retry {
                                delay: Duration::from_secs(600),
                                error: "y".into(),
                            },
                        };
                        Finish::new(r.lease, action)
                    })
                    .collect();
                b.finish(reports).await.expect("finish");
            }
        }));
    }
    let folder = {
        let b = b.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                b.recover_expired()
                    .await
                    .expect("recover (folds the counts)");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for w in workers {
        w.await.expect("worker");
    }
    folder.await.expect("folder");
    let client = common::client().await;
    let rows = client
        .query(
            &format!(
                "SELECT queue, state, count(*) FROM \"{}\".tasks GROUP BY queue, state",
                b.schema()
            ),
            &[],
        )
        .await
        .expect("recount");
    let stats = b.stats().await.expect("stats");
    let mut checked = 0;
    for r in rows {
        let queue: String = r.get(0);
        let code: i16 = r.get(1);
        let n: i64 = r.get(2);
        let state = TaskState::from_code(i64::from(code)).expect("known state");
        let kept = stats
            .iter()
            .find(|s| s.queue == queue)
            .map_or(0, |s| s.count(state));
        assert_eq!(kept, n as u64, "{queue} {state}");
        checked += n;
    }
    assert_eq!(checked, 4 * 20 * 25);
}
