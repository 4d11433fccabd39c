//! The RabbitMQ backend's core on the real broker: enqueue with confirms,
//! reserve, complete, retries through the delay ladder, dead letters,
//! release, follow-ups, fencing by the channel, foreign messages.

mod common;

use std::time::Duration;

use common::*;
use conveyor_amqp::AmqpOptions;
use conveyor_core::{Backend, Error, Finish, FinishAction, NewTask, Timestamp};

const WAIT: Duration = Duration::from_secs(15);

fn task(h: &str) -> NewTask {
    NewTask::new(h, format!("{{\"h\":\"{h}\"}}").into_bytes())
}

async fn report(b: &impl Backend, f: Finish) -> Result<(), Error> {
    let mut out = b.finish(vec![f]).await.expect("finish");
    out.pop().expect("one result")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_reserve_complete_in_order() {
    let b = backend(AmqpOptions::default()).await;
    let ids: Vec<_> = b
        .enqueue_many(vec![
            task("a"),
            task("b").timeout(Duration::from_secs(7)),
            task("c"),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let got = reserve_n(&b, 3, WAIT).await;
    assert_eq!(got.iter().map(|r| r.lease.id).collect::<Vec<_>>(), ids);
    assert_eq!(got[0].handler, "a");
    assert_eq!(got[0].payload, b"{\"h\":\"a\"}");
    assert_eq!(got[0].attempt, 1);
    assert_eq!(got[1].timeout, Some(Duration::from_secs(7)));
    for r in &got {
        report(&b, Finish::complete(r.lease.clone())).await.unwrap();
    }
    assert!(nothing_for(&b, Duration::from_millis(500)).await);
    assert_eq!(b.depth("default").await.unwrap(), (0, 0));
    // A report for a settled task is stale.
    let again = report(&b, Finish::complete(got[0].lease.clone())).await;
    assert!(matches!(again, Err(Error::StaleLease(_))), "{again:?}");
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_their_backoff_then_dead_letter() {
    let b = backend(AmqpOptions::default()).await;
    let id = b.enqueue(task("flaky").max_attempts(3)).await.unwrap().id;
    let mut attempt = 0;
    for expected in 1..=3u32 {
        let got = reserve_n(&b, 1, WAIT).await;
        assert_eq!(got.len(), 1, "attempt {expected} arrives");
        let r = &got[0];
        assert_eq!((r.lease.id, r.attempt), (id, expected));
        assert!(
            Timestamp::now().0 >= r.due_at.0 - 5,
            "never delivered before its due time"
        );
        attempt = r.attempt;
        let action = FinishAction::Retry {
            delay: Duration::from_millis(300 * u64::from(expected)),
            error: format!("boom {expected}"),
        };
        report(&b, Finish::new(r.lease.clone(), action))
            .await
            .unwrap();
        if expected < 3 {
            assert_eq!(b.depth("default").await.unwrap().1, 0);
        }
    }
    assert_eq!(attempt, 3);
    assert!(nothing_for(&b, Duration::from_millis(1500)).await);
    assert_eq!(
        b.depth("default").await.unwrap(),
        (0, 1),
        "the last failure is dead-lettered"
    );
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_tasks_arrive_when_due() {
    let b = backend(AmqpOptions::default()).await;
    let later = b
        .enqueue(task("later").delay(Duration::from_millis(1200)))
        .await
        .unwrap()
        .id;
    let now = b.enqueue(task("now")).await.unwrap().id;
    let first = reserve_n(&b, 1, WAIT).await;
    assert_eq!(first[0].lease.id, now);
    // Settle it: the first reservation sized the prefetch to one.
    report(&b, Finish::complete(first[0].lease.clone()))
        .await
        .unwrap();
    let second = reserve_n(&b, 1, WAIT).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].lease.id, later);
    assert!(Timestamp::now().0 >= second[0].due_at.0 - 5);
    assert!(second[0].due_at.0 >= second[0].enqueued_at.0 + 1200);
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_back_without_counting_the_attempt() {
    let b = backend(AmqpOptions::default()).await;
    let id = b.enqueue(task("r")).await.unwrap().id;
    let got = reserve_n(&b, 1, WAIT).await;
    report(&b, Finish::new(got[0].lease.clone(), FinishAction::Release))
        .await
        .unwrap();
    let again = reserve_n(&b, 1, WAIT).await;
    assert_eq!((again[0].lease.id, again[0].attempt), (id, 1));
    assert_ne!(again[0].lease.token, got[0].lease.token);
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_go_with_the_report_and_never_with_a_stale_one() {
    let b = backend(AmqpOptions::default()).await;
    b.enqueue(task("first")).await.unwrap();
    let got = reserve_n(&b, 1, WAIT).await;
    let done = Finish::complete(got[0].lease.clone())
        .with_follow_ups(vec![task("second"), task("third").queue("other")]);
    report(&b, done).await.unwrap();
    let next = reserve_n(&b, 1, WAIT).await;
    assert_eq!(next[0].handler, "second");
    // A bad follow-up refuses the whole report: nothing applied.
    let bad = Finish::complete(next[0].lease.clone()).with_follow_ups(vec![task("")]);
    assert!(report(&b, bad).await.is_err());
    // Fenced: the worker's connection dies, the task goes to another worker,
    // and the old report (with its follow-up) applies nothing.
    let other = peer(&b).await;
    b.close().await;
    let stolen = reserve_n(&other, 1, WAIT).await;
    assert_eq!(stolen[0].lease.id, next[0].lease.id);
    let stale = Finish::complete(next[0].lease.clone()).with_follow_ups(vec![task("never")]);
    assert!(matches!(report(&b, stale).await, Err(Error::StaleLease(_))));
    report(&other, Finish::complete(stolen[0].lease.clone()))
        .await
        .unwrap();
    assert!(nothing_for(&other, Duration::from_millis(800)).await);
    assert_eq!(other.depth("other").await.unwrap(), (1, 0));
    cleanup(&other, &["default", "other"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_broker_cannot_keep_is_refused() {
    let b = backend(AmqpOptions::default()).await;
    for t in [
        task("p").priority(3),
        task("u").unique_key("k"),
        task("o").ordering_key("k"),
    ] {
        let e = b.enqueue(t).await.unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
    }
    assert!(b.enqueue(task("q").queue("x".repeat(200))).await.is_err());
    assert!(b.result_store().is_err() && b.inspection().is_err());
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_result_store_each_step_is_recorded() {
    use conveyor_core::TaskState;
    let b = backend_keeping(AmqpOptions::default()).await;
    let id = b.enqueue(task("r").max_attempts(2)).await.unwrap().id;
    let store = b.result_store().expect("a result store");
    let state = |r: Option<conveyor_core::TaskRecord>| r.expect("a record").state;
    assert_eq!(state(store.get(id).await.unwrap()), TaskState::Available);
    let got = reserve_n(&b, 1, WAIT).await;
    let rec = store.get(id).await.unwrap().expect("record");
    assert_eq!((rec.state, rec.attempts), (TaskState::Running, 1));
    let retry = FinishAction::Retry {
        delay: Duration::from_millis(200),
        error: "flaky".into(),
    };
    report(&b, Finish::new(got[0].lease.clone(), retry))
        .await
        .unwrap();
    let rec = store.get(id).await.unwrap().expect("record");
    assert_eq!(rec.state, TaskState::Retrying);
    assert_eq!(rec.error.as_deref(), Some("flaky"));
    let again = reserve_n(&b, 1, WAIT).await;
    assert_eq!(again[0].attempt, 2);
    let done = FinishAction::Complete {
        result: Some(b"42".to_vec()),
    };
    report(&b, Finish::new(again[0].lease.clone(), done))
        .await
        .unwrap();
    let rec = store.get(id).await.unwrap().expect("record");
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(rec.result.as_deref(), Some(&b"42"[..]));
    assert_eq!(rec.attempts, 2);
    assert!(rec.finished_at.is_some());
    // The last attempt's failure is recorded dead.
    let id = b.enqueue(task("d").max_attempts(1)).await.unwrap().id;
    let got = reserve_n(&b, 1, WAIT).await;
    let fail = FinishAction::Retry {
        delay: Duration::ZERO,
        error: "gave up".into(),
    };
    report(&b, Finish::new(got[0].lease.clone(), fail))
        .await
        .unwrap();
    assert_eq!(state(store.get(id).await.unwrap()), TaskState::Dead);
    assert_eq!(b.depth("default").await.unwrap(), (0, 1));
    cleanup(&b, &["default"]).await;
    assert!(
        store.get(id).await.unwrap().is_none(),
        "records go with the namespace"
    );
}
