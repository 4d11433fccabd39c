//! A task's own keep and its handler's retention on RabbitMQ with a Redis
//! keeping the records: the header carries the keep, the finish stamps the
//! expiry on the kept record, `get` reads both back, and the keeper drops
//! each record at its own time (not at the retention the backend keeps
//! with). Without a store for the records, a task with a keep is refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_amqp::{AmqpBackend, AmqpOptions};
use conveyor_core::{
    Backend, Error, Finish, FinishAction, ManualClock, NewTask, Retention, SystemClock, TaskId,
};

/// Which of `ids` the keeper still holds.
async fn held(b: &Arc<dyn Backend>, ids: &[TaskId]) -> Vec<TaskId> {
    let mut out = Vec::new();
    for id in ids {
        if b.get(*id).await.expect("get").is_some() {
            out.push(*id);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_records_expire_at_their_own_time() {
    let prefix = common::fresh_prefix();
    let clock = Arc::new(ManualClock::default());
    let keeper = conveyor_redis::RedisBackend::connect_with(
        &common::results_url(),
        &common::records_prefix(&prefix),
        clock.clone(),
    )
    .await
    .expect("connect to the test Redis");
    let keeper: Arc<dyn Backend> = Arc::new(keeper);
    let amqp = AmqpBackend::connect_keeping(
        &common::amqp_url(),
        AmqpOptions::default().prefix(prefix),
        Arc::new(SystemClock),
        keeper.clone(),
    )
    .await
    .expect("connect to the test RabbitMQ");
    let b: Arc<dyn Backend> = Arc::new(amqp.clone());
    assert!(b.capabilities().keep);
    let hour = Duration::from_secs(3600);
    let handler = Retention {
        finished: 2 * hour,
        dead: 3 * hour,
    };
    let task = |name: &str| NewTask::new(name, name.as_bytes().to_vec());
    let mut ids = Vec::new();
    for t in [
        task("own").keep(5 * hour),
        task("handled"),
        task("dies"),
        task("plain"),
    ] {
        ids.push(b.enqueue(t).await.expect("enqueue").id);
    }
    let [own, handled, dies, plain] = ids[..] else {
        unreachable!("four tasks")
    };
    let got = common::reserve_n(&amqp, 4, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 4, "every task delivered");
    let reports = got
        .iter()
        .map(|r| {
            let action = if r.lease.id == dies {
                FinishAction::DeadLetter { error: "no".into() }
            } else {
                FinishAction::Complete { result: None }
            };
            // A task's own keep wins over its handler's retention; the
            // plain one's report carries none (the backend's retention,
            // one day, applies).
            let report = Finish::new(r.lease.clone(), action);
            if r.lease.id == plain {
                report
            } else {
                report.with_retention(handler)
            }
        })
        .collect();
    for r in b.finish(reports).await.expect("finish") {
        r.expect("settled");
    }
    let kept = keeper.record_keeper().expect("a record keeper");
    let mut expect = vec![own, handled, dies, plain];
    assert_eq!(held(&b, &expect).await, expect);
    let start = conveyor_core::Clock::now(&*clock);
    // Each record reads back its keep and its own expiry, on the keeper's
    // clock (it kept them at `start`); the plain one has none.
    for (id, keep, kept_for) in [
        (own, Some(5 * hour), Some(5 * hour)),
        (handled, None, Some(2 * hour)),
        (dies, None, Some(3 * hour)),
        (plain, None, None),
    ] {
        let r = b.get(id).await.expect("get").expect("the record");
        assert_eq!(r.keep, keep, "the keep of {id}");
        assert_eq!(
            r.expires_at,
            kept_for.map(|d| start.plus(d)),
            "the expiry of {id}"
        );
    }
    for (after, gone) in [(2, handled), (3, dies), (5, own), (24, plain)] {
        clock.set(start.plus(after * hour + Duration::from_secs(60)));
        kept.expire_kept().await.expect("expire");
        expect.retain(|id| *id != gone);
        assert_eq!(held(&b, &ids).await, expect, "after {after} h");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_record_store_a_keep_is_refused() {
    let amqp = common::backend(AmqpOptions::default()).await;
    assert!(!amqp.capabilities().keep);
    let r = amqp
        .enqueue(NewTask::new("k", b"1".to_vec()).keep(Duration::from_secs(60)))
        .await;
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
}
