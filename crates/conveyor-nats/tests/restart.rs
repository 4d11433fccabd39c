//! The backend survives a NATS restart: the test runs its own
//! `nats-server -js` (store in a temporary directory) on a free loopback
//! port, kills it with SIGKILL mid-work, starts it again on the same port
//! and directory, and shows that calls fail cleanly (as transient backend
//! errors) meanwhile, then work again with every enqueued task still there:
//! leases taken before the crash are still honoured, the rest of the work
//! is reserved and finished, and idle workers are woken again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::parts::*;
use conveyor_core::{Backend, Error, Finish, FinishAction, NewTask, SystemClock, TaskState};
use conveyor_nats::NatsBackend;
use conveyor_testkit::nats_server::TempNats;

fn queue() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_nats_restart() {
    let Some(mut server) = TempNats::start() else {
        return;
    };
    let b = NatsBackend::connect_with(&server.url(), "restart", Arc::new(SystemClock))
        .await
        .expect("connect");
    let lease = Duration::from_secs(300);

    let tasks: Vec<NewTask> = (0..100)
        .map(|i| {
            let t = NewTask::new(format!("h{i}"), vec![i as u8]);
            match i % 4 {
                0 => t.unique_key(format!("u{i}")),
                1 => t.priority(3),
                2 => t.delay(Duration::from_secs(3600)),
                _ => t,
            }
        })
        .collect();
    let ids: Vec<_> = b
        .enqueue_many(tasks)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let held = b.reserve(&queue(), 10, lease).await.expect("reserve");
    assert_eq!(held.len(), 10);
    let done: Vec<_> = held[..5]
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
    for r in b.finish(done).await.expect("finish") {
        r.expect("applies");
    }
    let mut before = Vec::new();
    for id in &ids {
        before.push(b.get(*id).await.expect("get").expect("task"));
    }

    server.kill();
    let failed = tokio::time::timeout(Duration::from_secs(60), b.stats())
        .await
        .expect("a call against a dead server returns");
    match failed {
        Err(Error::Backend(e)) => assert!(e.is_transient(), "{e:?} is transient"),
        other => panic!("store errors while the server is down: {other:?}"),
    }
    let failed = tokio::time::timeout(Duration::from_secs(60), b.reserve(&queue(), 1, lease))
        .await
        .expect("a call against a dead server returns");
    assert!(matches!(failed, Err(Error::Backend(_))), "{failed:?}");

    assert_eq!(b.reconnects(), Some(0));
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match b.stats().await {
            Ok(_) if b.reconnects() >= Some(1) => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                assert!(Instant::now() < deadline, "no reconnect after 60 s: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // Every task is there as it was.
    for rec in &before {
        let now = b.get(rec.id).await.expect("get").expect("task kept");
        assert_eq!(&now, rec);
    }
    // Leases taken before the crash are honoured, and the rest of the work
    // proceeds: each ready task exactly once.
    let report = b
        .finish(
            held[5..]
                .iter()
                .map(|r| Finish::complete(r.lease.clone()))
                .collect(),
        )
        .await
        .expect("finish after restart");
    assert!(report.iter().all(|r| r.is_ok()), "{report:?}");
    let mut reserved = 0;
    loop {
        let got = b.reserve(&queue(), 50, lease).await.expect("reserve");
        if got.is_empty() {
            break;
        }
        reserved += got.len();
        let out = b
            .finish(
                got.iter()
                    .map(|r| Finish::complete(r.lease.clone()))
                    .collect(),
            )
            .await
            .expect("finish");
        assert!(out.iter().all(|r| r.is_ok()));
    }
    assert_eq!(reserved, 75 - 10, "every ready task, once");
    let stats = b.stats().await.expect("stats");
    assert_eq!(stats[0].count(TaskState::Completed), 75);
    assert_eq!(stats[0].count(TaskState::Scheduled), 25);

    // The wake-up subscription came back with the connection.
    let waiter = b.clone();
    let woke = tokio::spawn(async move {
        waiter
            .wait_for_work(&queue(), Duration::from_secs(600))
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !woke.is_finished() {
        assert!(Instant::now() < deadline, "no wake-up after the restart");
        b.enqueue(NewTask::new("late", Vec::new()))
            .await
            .expect("enqueue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(woke.await.expect("waiter"));
}
