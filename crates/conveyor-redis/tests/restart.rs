//! The backend survives a Redis restart: the test runs its own `redis-server`
//! (append-only file, fsync on every write) on a free loopback port, kills it
//! with SIGKILL mid-work, starts it again on the same directory, and shows that
//! calls fail cleanly meanwhile, then work again with every task still there
//! (the script cache was lost with the process and is reloaded on `NOSCRIPT`).

use conveyor_core::parts::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{
    Backend, Error, Finish, FinishAction, NewTask, ReserveParams, SystemClock, TaskState,
};
use conveyor_redis::RedisBackend;
use conveyor_testkit::servers::TempRedis;

fn queue() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn survives_a_redis_restart() {
    let mut server = TempRedis::start();
    let url = server.url();
    let b = RedisBackend::connect_with(&url, "conveyor-restart:", Arc::new(SystemClock))
        .await
        .expect("connect");
    let lease = Duration::from_secs(300);

    let tasks: Vec<NewTask> = (0..100)
        .map(|i| {
            let t = NewTask::new(format!("h{i}"), vec![i as u8]);
            match i % 4 {
                0 => t.unique_key(format!("u{i}")),
                1 => t.ordering_key("k"),
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
    let held = b
        .reserve(ReserveParams::new(&queue(), 10, lease))
        .await
        .expect("reserve");
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
    // Start the wake-up subscriber before the crash.
    b.wait_for_work(&queue(), Duration::from_millis(20)).await;
    let before: Vec<_> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(b.get(*id).await.expect("get").expect("task"));
        }
        v
    };

    server.kill();
    let failed = tokio::time::timeout(Duration::from_secs(60), b.stats())
        .await
        .expect("a call against a dead server returns");
    assert!(
        matches!(failed, Err(Error::Backend(_))),
        "store errors while the server is down: {failed:?}"
    );
    let failed = tokio::time::timeout(
        Duration::from_secs(60),
        b.reserve(ReserveParams::new(&queue(), 1, lease)),
    )
    .await
    .expect("a call against a dead server returns");
    assert!(matches!(failed, Err(Error::Backend(_))));

    // The wake-up subscriber is up before the restart, and counted once
    // it is back.
    b.wait_for_work(&queue(), Duration::from_millis(10)).await;
    assert_eq!(b.reconnects(), Some(0));
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match b.stats().await {
            Ok(_) => break,
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
    // Scripts run again (the restarted server's cache was empty), leases taken
    // before the crash are still honoured, and the rest of the work proceeds.
    let report = b
        .finish(
            held[5..]
                .iter()
                .map(|r| Finish::complete(r.lease.clone()))
                .collect(),
        )
        .await
        .expect("finish after restart");
    assert!(report.iter().all(|r| r.is_ok()));
    let mut reserved = 0;
    loop {
        let got = b
            .reserve(ReserveParams::new(&queue(), 50, lease))
            .await
            .expect("reserve");
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
    assert_eq!(reserved, 75 - 10, "every available task, once");
    let stats = b.stats().await.expect("stats");
    assert_eq!(stats[0].count(TaskState::Completed), 75);
    assert_eq!(stats[0].count(TaskState::Scheduled), 25);

    // The wake-up subscriber reconnected too.
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
    assert!(b.reconnects() >= Some(1), "{:?}", b.reconnects());
}
