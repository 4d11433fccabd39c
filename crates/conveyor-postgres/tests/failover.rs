//! PostgreSQL with a standby (`docs/high-availability.md`): a URL naming
//! both follows a promotion, a reservation lost with an asynchronous
//! primary never gives its token to the next one, connections to a primary
//! turned read-only are dropped rather than reused, and a worker keeps
//! every acknowledged task across a failover to a synchronous standby.
//! Each test runs a primary and a standby of its own (initdb, pg_basebackup
//! and pg_ctl in temporary directories, on free loopback ports).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::parts::*;
use conveyor_core::{Backend, Error, NewTask};
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::lost_claims::{lost_claim_is_fenced, reserve_one};
use conveyor_testkit::postgres_pair::PostgresPair;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking step")
}

async fn connect(url: &str) -> PostgresBackend {
    PostgresBackend::builder(url)
        .schema("conveyor_failover")
        .pool_size(3)
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postgres),
    ignore = "initdb, pg_ctl, pg_basebackup and psql are not installed (Debian package postgresql)"
)]
async fn a_token_lost_in_a_failover_is_never_issued_again() {
    let pair = Arc::new(blocking(|| PostgresPair::start(false)).await);
    let b = connect(&pair.url("")).await;
    let task = b
        .enqueue(NewTask::new("work", Vec::new()))
        .await
        .expect("enqueue");
    let p = pair.clone();
    blocking(move || p.caught_up()).await;
    // The standby stops receiving; the reservation below reaches the
    // primary alone, and is lost with it.
    let p = pair.clone();
    blocking(move || p.standby.stop_server()).await;
    let lost = reserve_one(&b).await;
    assert_eq!(lost.lease.id, task.id);
    let p = pair.clone();
    blocking(move || {
        p.primary.stop_server();
        p.standby.start_server();
        p.standby.promote();
    })
    .await;
    // On the promoted standby the task was never reserved: it is reserved
    // again, and its new token is not the lost one.
    lost_claim_is_fenced(&b, task.id, &lost).await;
    drop(b);
    blocking(move || drop(pair)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postgres),
    ignore = "initdb, pg_ctl, pg_basebackup and psql are not installed (Debian package postgresql)"
)]
async fn connections_to_a_primary_turned_read_only_are_dropped() {
    let pair = Arc::new(blocking(|| PostgresPair::start(false)).await);
    let b = connect(&pair.url("")).await;
    // Every pooled connection opened, to the primary.
    let mut held = Vec::new();
    for i in 0..3u8 {
        held.push(
            b.enqueue(NewTask::new("work", vec![i]))
                .await
                .expect("enqueue"),
        );
    }
    let p = pair.clone();
    blocking(move || p.caught_up()).await;
    let before = b.reconnects().unwrap_or(0);
    // A failover: the standby promoted, the old primary fenced (it keeps
    // running and keeps its connections, but takes no more writes).
    let p = pair.clone();
    blocking(move || {
        p.standby.promote();
        p.primary
            .query("ALTER SYSTEM SET default_transaction_read_only = on");
        p.primary.query("SELECT pg_reload_conf()");
    })
    .await;
    // A reload reaches each session on its own time, so a pooled
    // connection may still write to the old primary for a moment; then
    // each is refused, and the pool must move. Each write is told apart by
    // its handler's name.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut refused, mut on_old) = (0, 0);
    for n in 0.. {
        let handler = format!("after{n}");
        match b.enqueue(NewTask::new(&handler, Vec::new())).await {
            Ok(_) => {
                let sql = format!(
                    "SELECT count(*) FROM conveyor_failover.tasks WHERE handler = '{handler}'"
                );
                let p = pair.clone();
                if blocking(move || p.standby.query(&sql)).await == "1" {
                    break;
                }
                on_old += 1;
            }
            Err(Error::Backend(e)) => {
                assert!(e.is_transient(), "a read-only refusal is an outage: {e}");
                refused += 1;
            }
            Err(e) => panic!("enqueue: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "writes still go to the old primary after {refused} refusals and {on_old} writes \
             there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once refused, a connection is not used again: at most one refusal
    // per pooled connection (the writes before the fence reached a session
    // are PostgreSQL's timing, not the pool's).
    assert!(
        refused <= 3,
        "{refused} writes refused ({on_old} written to the old primary) before the pool moved"
    );
    assert!(b.reconnects().unwrap_or(0) > before);
    // The tasks enqueued before the failover are on the promoted standby.
    for e in &held {
        assert!(b.get(e.id).await.expect("get").is_some());
    }
    drop(b);
    blocking(move || drop(pair)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postgres),
    ignore = "initdb, pg_ctl, pg_basebackup and psql are not installed (Debian package postgresql)"
)]
async fn a_worker_follows_a_failover_to_a_synchronous_standby() {
    conveyor_testkit::faults::failover_mid_run(common::fault_target(), || {
        Box::new(PostgresPair::start(true))
    })
    .await;
}
