//! A backend survives a PostgreSQL restart: calls fail with `Error::Backend`
//! while the server is down (without hanging) and succeed again once it is
//! back, with nothing acknowledged lost. The test runs its own server (initdb
//! and pg_ctl in a temporary directory, on a free loopback port), so stopping it
//! disturbs nobody.

use conveyor_core::parts::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{Backend, Error, Finish, NewTask, ReserveParams};
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::servers::TempPostgres;

fn queues() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postgres),
    ignore = "initdb and pg_ctl are not installed (Debian package postgresql)"
)]
async fn survives_a_server_restart() {
    let server = tokio::task::spawn_blocking(TempPostgres::start)
        .await
        .expect("start server");
    let server = Arc::new(server);
    let b = PostgresBackend::builder(&server.url())
        .schema("conveyor_restart")
        .pool_size(3)
        .connect()
        .await
        .expect("connect");
    let before = b
        .enqueue_many(vec![
            NewTask::new("a", Vec::new()),
            NewTask::new("b", Vec::new()),
        ])
        .await
        .expect("enqueue");
    // Start the notification listener too, so its reconnect is exercised.
    b.wait_for_work(&queues(), Duration::from_millis(200)).await;

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop_server())
        .await
        .expect("stop");
    for _ in 0..3 {
        let began = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            b.reserve(ReserveParams::new(&queues(), 10, Duration::from_secs(30))),
        )
        .await
        .expect("a call while the server is down returns instead of hanging");
        assert!(matches!(r, Err(Error::Backend(_))), "{r:?}");
        assert!(began.elapsed() < Duration::from_secs(30));
    }
    let down = b.enqueue(NewTask::new("c", Vec::new())).await;
    assert!(matches!(down, Err(Error::Backend(_))));

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.start_server())
        .await
        .expect("start again");
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match b
            .reserve(ReserveParams::new(&queues(), 10, Duration::from_secs(30)))
            .await
        {
            Ok(got) => break got,
            Err(Error::Backend(e)) => {
                assert!(Instant::now() < deadline, "no recovery after restart: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    };
    let got_ids: Vec<_> = got.iter().map(|r| r.lease.id).collect();
    assert_eq!(
        got_ids,
        before.iter().map(|e| e.id).collect::<Vec<_>>(),
        "tasks enqueued before the restart are all there"
    );
    // Every kind of call works again.
    let reports = got
        .iter()
        .map(|r| Finish::complete(r.lease.clone()))
        .collect();
    for r in b.finish(reports).await.expect("finish") {
        r.expect("held");
    }
    let c = b
        .enqueue(NewTask::new("c", Vec::new()))
        .await
        .expect("enqueue");
    assert!(b.get(c.id).await.expect("get").is_some());
    b.stats().await.expect("stats");
    // The pool's connections were replaced: counted as reconnects.
    assert!(b.reconnects() >= Some(1), "{:?}", b.reconnects());
    drop(b);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("clean up");
}
