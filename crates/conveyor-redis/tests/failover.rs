//! Redis with replicas (`docs/high-availability.md`): a reservation lost
//! with an asynchronous primary never gives its token to the next one,
//! writes asked to wait for a replica fail rather than pass unconfirmed
//! (but a claim stands, so its task is not left leased to nobody), a
//! `redis+sentinel://` URL leaves a demoted primary for the one the
//! sentinels name, and a worker keeps every acknowledged task across a
//! failover the sentinels run. Each test starts its own servers (and
//! sentinels) on free loopback ports.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::parts::*;
use conveyor_core::{Backend, Error, NewTask, SystemClock, TaskState};
use conveyor_redis::RedisBackend;
use conveyor_testkit::lost_claims::{lost_claim_is_fenced, reserve_one};
use conveyor_testkit::redis_sentinels::RedisSentinels;
use conveyor_testkit::servers::TempRedis;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking step")
}

async fn connect(url: &str) -> RedisBackend {
    RedisBackend::connect_with(url, "failover:", Arc::new(SystemClock))
        .await
        .expect("connect")
}

/// A primary and a replica that has linked to it.
async fn primary_and_replica() -> (TempRedis, TempRedis) {
    blocking(|| {
        let primary = TempRedis::start();
        let replica = TempRedis::replica_of(&primary);
        replica.wait_linked();
        (primary, replica)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn a_token_lost_in_a_failover_is_never_issued_again() {
    let (primary, replica) = primary_and_replica().await;
    let b = connect(&primary.url()).await;
    let task = b
        .enqueue(NewTask::new("work", Vec::new()))
        .await
        .expect("enqueue");
    let (mut primary, replica) = blocking(move || {
        primary.caught_up(&replica);
        // The replica stops replicating (promoted, with the primary still
        // up): the reservation below reaches the primary alone, and is
        // lost with it. (A paused replica would not do: the primary's
        // stream waits in the socket and arrives once it goes on.)
        let out = replica.cli(&["REPLICAOF", "NO", "ONE"]);
        assert_eq!(out, "OK", "promote the replica");
        (primary, replica)
    })
    .await;
    let lost = reserve_one(&b).await;
    assert_eq!(lost.lease.id, task.id);
    drop(b);
    let replica = blocking(move || {
        primary.kill();
        replica
    })
    .await;
    let b = connect(&replica.url()).await;
    // On the promoted replica the task was never reserved: it is reserved
    // again, and its new token is not the lost one.
    lost_claim_is_fenced(&b, task.id, &lost).await;
    drop(b);
    blocking(move || drop(replica)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn writes_asked_to_wait_for_a_replica_fail_without_one() {
    let (primary, replica) = primary_and_replica().await;
    let url = format!(
        "{}?prefix=wait:&replicas=1&replicas_timeout_ms=300",
        primary.url()
    );
    let b = conveyor_redis::SCHEME.open(&url).await.expect("open");
    b.enqueue(NewTask::new("work", vec![1]))
        .await
        .expect("confirmed by the replica");
    let replica = blocking(move || {
        replica.pause();
        replica
    })
    .await;
    let started = Instant::now();
    let e = b
        .enqueue(NewTask::new("work", vec![2]))
        .await
        .expect_err("a write no replica confirmed");
    let Error::Backend(e) = e else {
        panic!("not a backend error: {e}");
    };
    assert!(e.is_transient(), "{e}");
    let said = format!("{:?}", e);
    assert!(said.contains("0 of 1 replicas"), "{said}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Reads do not wait.
    let ready: u64 = b
        .stats()
        .await
        .expect("stats")
        .iter()
        .map(|q| q.counts.get(&TaskState::Available).copied().unwrap_or(0))
        .sum();
    assert_eq!(ready, 2, "made on the primary");
    // A claim stands on the primary all the same: hiding it would leave
    // the task leased and run by nobody until its lease ran out.
    let claimed = reserve_one(b.as_ref()).await;
    assert_eq!(
        b.stats()
            .await
            .expect("stats")
            .iter()
            .map(|q| q.counts.get(&TaskState::Running).copied().unwrap_or(0))
            .sum::<u64>(),
        1,
        "the claim answered is the one held"
    );
    let replica = blocking(move || {
        replica.resume();
        replica
    })
    .await;
    b.enqueue(NewTask::new("work", vec![3]))
        .await
        .expect("confirmed once the replica is back");
    b.finish(vec![conveyor_core::Finish::complete(claimed.lease)])
        .await
        .expect("the unconfirmed claim settles");
    drop(b);
    blocking(move || drop((primary, replica))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn a_demoted_primary_is_left_for_the_one_the_sentinels_name() {
    let set = Arc::new(blocking(|| RedisSentinels::start(1)).await);
    let b = connect(&set.url("")).await;
    let before = b
        .enqueue(NewTask::new("before", Vec::new()))
        .await
        .expect("enqueue");
    let s = set.clone();
    let old = blocking(move || s.primary_port()).await;
    // A failover with the old primary still up: it is demoted to a
    // replica, and keeps answering reads (and refusing writes) on its
    // address.
    let s = set.clone();
    let new = blocking(move || {
        let new = s.fail_over();
        s.wait_for_role(old, "slave");
        new
    })
    .await;
    assert_ne!(old, new);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    let written = loop {
        match b.enqueue(NewTask::new("after", Vec::new())).await {
            Ok(e) => break e,
            Err(Error::Backend(e)) => {
                assert!(e.is_transient(), "a failover is an outage: {e}");
                refused += 1;
            }
            Err(e) => panic!("enqueue: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "writes still refused after 10 s ({refused} refusals): the client stayed on the \
             demoted primary"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(b.primary_changes() >= 1);
    // The write went to the new primary, which also has the task from
    // before the failover.
    let s = set.clone();
    let key_count = blocking(move || s.server(new).cli(&["DBSIZE"])).await;
    assert_ne!(key_count, "0");
    assert!(b.get(written.id).await.expect("get").is_some());
    assert!(b.get(before.id).await.expect("get").is_some());
    drop(b);
    blocking(move || drop(set)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn no_sentinel_answering_is_a_clear_error() {
    let port = conveyor_testkit::servers::free_port();
    let url = format!("redis+sentinel://127.0.0.1:{port}/conveyor/0");
    let e = RedisBackend::connect(&url).await.expect_err("no sentinel");
    let said = e.to_string();
    assert!(
        said.contains("no Redis Sentinel named a primary for \"conveyor\""),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_follows_a_sentinel_failover() {
    // What the worker and the backend said, shown when the case fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    conveyor_testkit::faults::failover_mid_run(common::fault_target(), || {
        Box::new(RedisSentinels::start(2))
    })
    .await;
}
