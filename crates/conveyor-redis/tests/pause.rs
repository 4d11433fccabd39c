//! Paused queues live in Redis: a backend on another connection (as another
//! process would have) honours a pause made through the first, and a pause
//! outlives the backend that made it.

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_redis::RedisBackend;
use conveyor_testkit::Scoped;

async fn connect(prefix: &str, clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let b = RedisBackend::connect_with(&common::redis_url(), prefix, clock)
        .await
        .expect("connect to the test Redis");
    Arc::new(b)
}

/// The namespace of one test, deleted when the test ends.
fn scoped_prefix() -> Scoped<String> {
    let prefix = common::fresh_prefix();
    let cleanup = prefix.clone();
    Scoped::new(prefix, move || common::delete_prefix(&cleanup))
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
