//! Paused queues live in the namespace's bucket: a backend on another
//! connection (as another process would have) honours a pause made through
//! the first, also while its reservers race the pause, and a pause outlives
//! the backend that made it.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, ManualClock, NewTask, ReserveParams};
use conveyor_nats::NatsBackend;
use conveyor_testkit::Scoped;

async fn connect(prefix: &str, clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let b = NatsBackend::connect_with(&common::nats_url(), prefix, clock)
        .await
        .expect("connect to the test NATS server");
    Arc::new(b)
}

/// The namespace of one test, deleted when the test ends.
fn scoped_prefix() -> Scoped<String> {
    let prefix = common::fresh_prefix();
    let cleanup = prefix.clone();
    Scoped::new(prefix, move || {
        common::destroy(&common::nats_url(), &cleanup)
    })
}

/// A pause made through one backend holds another's reservations back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_connection_honours_a_pause() {
    let clock = Arc::new(ManualClock::default());
    let prefix = scoped_prefix();
    let pauser = connect(prefix.inner(), clock.clone()).await;
    let reserver = connect(prefix.inner(), clock.clone()).await;
    conveyor_testkit::conformance::pause_is_shared(pauser, reserver, clock).await;
}

/// A pause survives the backend that made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_reconnecting() {
    let clock = Arc::new(ManualClock::default());
    let prefix = scoped_prefix();
    let first = connect(prefix.inner(), clock.clone()).await;
    conveyor_testkit::conformance::pause_is_durable(first, || {
        connect(prefix.inner(), clock.clone())
    })
    .await;
}

/// Reservers on two other connections race a pause made through a third:
/// none of their reservations begun after `pause` returned takes a task of
/// the queue, none is handed out twice, and every task runs once resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservers_on_other_connections_honour_a_pause() {
    const TASKS: usize = 1000;
    let clock = Arc::new(ManualClock::default());
    let prefix = scoped_prefix();
    let pauser = connect(prefix.inner(), clock.clone()).await;
    let queues = vec!["race".to_string()];
    let tasks = (0..TASKS).map(|_| NewTask::new("c", b"{}".to_vec()).queue("race"));
    pauser.enqueue_many(tasks.collect()).await.expect("enqueue");
    let paused = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let mut joins = Vec::new();
    for i in 0..4 {
        // Two reservers on each of two other connections.
        let b = if i % 2 == 0 {
            connect(prefix.inner(), clock.clone()).await
        } else {
            joins
                .last()
                .map(|(b, _): &(Arc<dyn Backend>, _)| b.clone())
                .expect("a reserver")
        };
        let (paused, count, queues) = (paused.clone(), count.clone(), queues.clone());
        let reserver = b.clone();
        let join = tokio::spawn(async move {
            let mut taken = Vec::new();
            let mut after_pause = 0;
            while after_pause < 20 {
                let began_paused = paused.load(Ordering::SeqCst);
                let got = reserver
                    .reserve(ReserveParams::new(&queues, 2, Duration::from_secs(30)))
                    .await
                    .expect("reserve");
                let ids: Vec<_> = got.iter().map(|r| r.lease.id).collect();
                assert!(
                    !began_paused || ids.is_empty(),
                    "a reservation begun after the pause returned took {ids:?}"
                );
                if began_paused {
                    after_pause += 1;
                }
                count.fetch_add(ids.len(), Ordering::SeqCst);
                taken.extend(ids);
                tokio::task::yield_now().await;
            }
            taken
        });
        joins.push((b, join));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(pauser.pause_queue("race").await.expect("pause"));
    paused.store(true, Ordering::SeqCst);
    let mut taken = HashSet::new();
    for (_, join) in joins {
        for id in join.await.expect("a reserver") {
            assert!(taken.insert(id), "task {id} handed out twice");
        }
    }
    assert!(pauser.resume_queue("race").await.expect("resume"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while taken.len() < TASKS && tokio::time::Instant::now() < deadline {
        let got = pauser
            .reserve(ReserveParams::new(&queues, 100, Duration::from_secs(30)))
            .await
            .expect("reserve");
        if got.is_empty() {
            pauser
                .wait_for_work(&queues, Duration::from_millis(50))
                .await;
        }
        for r in got {
            assert!(
                taken.insert(r.lease.id),
                "task {} handed out twice",
                r.lease.id
            );
        }
    }
    assert_eq!(taken.len(), TASKS, "every task is reserved once in the end");
}
