//! What a reserve may skip and what it must still see: the schedule is
//! listed only when something known may be due (or every second of
//! conveyor's clock), and the ready listing is skipped while one known
//! priority's fetches come back full. A manual clock moved past a due time
//! this process knows promotes on the next reserve; another process's
//! delayed task is seen within a second of conveyor's clock; a priority
//! published meanwhile, here or elsewhere, is not starved.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Backend, Finish, FinishAction, ManualClock, NewTask, ReserveParams, DEFAULT_QUEUE,
};
use conveyor_nats::NatsBackend;

const LEASE: Duration = Duration::from_secs(30);

fn queue() -> Vec<String> {
    vec![DEFAULT_QUEUE.to_string()]
}

async fn reserve(b: &dyn Backend, max: usize) -> Vec<conveyor_core::Reserved> {
    b.reserve(ReserveParams::new(&queue(), max, LEASE))
        .await
        .expect("reserve")
}

/// A second process on the same namespace and clock.
async fn other(b: &NatsBackend, clock: Arc<ManualClock>) -> NatsBackend {
    NatsBackend::connect_with(&common::nats_url(), b.prefix(), clock)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_due_time_promotes_on_the_next_reserve_within_a_second() {
    let clock = Arc::new(ManualClock::default());
    let b = common::scoped(common::fresh(clock.clone()).await);
    assert!(
        reserve(&*b, 10).await.is_empty(),
        "the schedule is listed now"
    );
    let id = b
        .enqueue(NewTask::new("h", Vec::new()).delay(Duration::from_millis(300)))
        .await
        .expect("enqueue")
        .id;
    clock.advance(Duration::from_millis(299));
    assert!(reserve(&*b, 10).await.is_empty(), "not due yet");
    clock.advance(Duration::from_millis(1));
    let got = reserve(&*b, 10).await;
    assert_eq!(got.len(), 1, "due 300 ms after a listing: promoted at once");
    assert_eq!(got[0].lease.id, id);

    // A retry's backoff, written by this process, likewise.
    let out = b
        .finish(vec![Finish::new(
            got[0].lease.clone(),
            FinishAction::Retry {
                delay: Duration::from_millis(200),
                error: "again".into(),
            },
        )])
        .await
        .expect("finish");
    assert!(out[0].is_ok());
    clock.advance(Duration::from_millis(199));
    assert!(reserve(&*b, 10).await.is_empty(), "backing off");
    clock.advance(Duration::from_millis(1));
    let got = reserve(&*b, 10).await;
    assert_eq!(got.len(), 1, "the backoff ended: promoted at once");
    assert_eq!(got[0].attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_delay_is_seen_within_a_second_of_the_clock() {
    let clock = Arc::new(ManualClock::default());
    let mine = common::fresh(clock.clone()).await;
    let theirs = other(&mine, clock.clone()).await;
    let b = common::scoped(mine);
    assert!(
        reserve(&*b, 10).await.is_empty(),
        "the schedule is listed now"
    );
    theirs
        .enqueue(NewTask::new("h", Vec::new()).delay(Duration::from_millis(100)))
        .await
        .expect("enqueue");
    clock.advance(Duration::from_millis(100));
    // Due, but unknown here until the next listing, at most a second on
    // (the skip at work: this reserve reads no schedule).
    assert!(reserve(&*b, 10).await.is_empty(), "not listed yet");
    clock.advance(Duration::from_millis(900));
    let got = reserve(&*b, 10).await;
    assert_eq!(got.len(), 1, "a second after the last listing, it is read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_priority_is_not_starved_by_full_fetches() {
    let clock = Arc::new(ManualClock::default());
    let mine = common::fresh(clock.clone()).await;
    let theirs = other(&mine, clock.clone()).await;
    let b = common::scoped(mine);
    let low: Vec<NewTask> = (0..6).map(|_| NewTask::new("low", Vec::new())).collect();
    b.enqueue_many(low).await.expect("enqueue");
    // Full fetches at the only priority: the next reserves go straight there.
    assert_eq!(reserve(&*b, 1).await[0].handler, "low");
    assert_eq!(reserve(&*b, 1).await[0].handler, "low");
    // This process publishes a higher priority: taken first at once.
    b.enqueue(NewTask::new("mine", Vec::new()).priority(5))
        .await
        .expect("enqueue");
    assert_eq!(reserve(&*b, 1).await[0].handler, "mine");
    assert_eq!(reserve(&*b, 1).await[0].handler, "low");
    assert_eq!(reserve(&*b, 1).await[0].handler, "low");
    // Another process does: the short fetch at the known priority falls
    // back to the full path in the same call, which finds it.
    theirs
        .enqueue(NewTask::new("theirs", Vec::new()).priority(9))
        .await
        .expect("enqueue");
    let got = reserve(&*b, 10).await;
    let handlers: Vec<&str> = got.iter().map(|t| t.handler.as_str()).collect();
    assert_eq!(handlers.len(), 3, "{handlers:?}");
    assert!(handlers.contains(&"theirs"), "{handlers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_priority_is_seen_once_the_listing_is_old() {
    let clock = Arc::new(ManualClock::default());
    let mine = common::fresh(clock.clone()).await;
    let theirs = other(&mine, clock.clone()).await;
    let b = common::scoped(mine);
    let low: Vec<NewTask> = (0..6).map(|_| NewTask::new("low", Vec::new())).collect();
    b.enqueue_many(low).await.expect("enqueue");
    assert_eq!(reserve(&*b, 1).await[0].handler, "low");
    assert_eq!(reserve(&*b, 1).await[0].handler, "low");
    theirs
        .enqueue(NewTask::new("theirs", Vec::new()).priority(9))
        .await
        .expect("enqueue");
    // The listing's word on priorities is trusted 200 ms at most.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(reserve(&*b, 1).await[0].handler, "theirs");
}
