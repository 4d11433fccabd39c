//! Params and results at, just under and just over the value limit
//! (`conveyor_testkit::value_limits`): one set by the URL's `max_value=`, and
//! the server's own `proto-max-bulk-len` on a private server configured low,
//! where a value over it, sent anyway, would be a protocol error that drops
//! the connection (an outage, retried for ever).

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, NewTask};
use conveyor_redis::RedisBackend;
use conveyor_testkit::servers::TempRedis;
use conveyor_testkit::value_limits;

const CAP: usize = 64 << 10;

/// A fresh namespace on the shared server, opened by URL with `max_value`.
async fn capped() -> (Arc<dyn Backend>, String) {
    let prefix = common::fresh_prefix();
    let url = format!("{}/0?prefix={prefix}&max_value={CAP}", common::redis_url());
    let b = conveyor_redis::SCHEME.open(&url).await.expect("open");
    (b, prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_at_a_url_cap() {
    let (b, prefix) = capped().await;
    value_limits::values_at_the_limit(b, CAP).await;
    common::delete_prefix(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stores_a_result_over_the_cap_as_the_attempts_failure() {
    let (b, prefix) = capped().await;
    value_limits::a_worker_stores_the_refusal(b, CAP).await;
    common::delete_prefix(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn values_at_the_servers_own_limit() {
    let server = TempRedis::start();
    let bulk: usize = 1 << 20;
    let client = redis::Client::open(server.url()).expect("url");
    let mut conn = client.get_connection().expect("connect");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("proto-max-bulk-len")
        .arg(bulk)
        .query(&mut conn)
        .expect("CONFIG SET");
    let b = RedisBackend::connect(&server.url()).await.expect("connect");
    let max = b.max_value();
    assert_eq!(
        max,
        bulk - (64 << 10),
        "the server's limit less room for the record"
    );
    let store: Arc<dyn Backend> = Arc::new(b.clone());
    // Over the server's own limit: refused by conveyor, not a dropped
    // connection.
    let e = store
        .enqueue(NewTask::new("big", vec![0; bulk + 1]))
        .await
        .expect_err("over the server's limit");
    assert!(!e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("proto-max-bulk-len"), "{e}");
    value_limits::values_at_the_limit(store, max).await;
}
