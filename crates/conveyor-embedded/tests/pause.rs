//! Paused queues live in the file: another handle on it (another
//! connection, as another process would have) honours a pause, and a pause
//! outlives the handle that made it.

mod common;

use std::sync::Arc;

use conveyor_core::Backend;

/// A pause made through one handle holds another handle's reservations back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_handle_honours_a_pause() {
    let f = common::Fixture::new();
    let pauser: Arc<dyn Backend> = Arc::new(f.reopen());
    let reserver: Arc<dyn Backend> = Arc::new(f.reopen());
    conveyor_testkit::conformance::pause_is_shared(pauser, reserver, f.clock.clone()).await;
}

/// A pause survives closing the file and opening it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_reopening() {
    let f = common::Fixture::new();
    let first: Arc<dyn Backend> = Arc::new(f.reopen());
    conveyor_testkit::conformance::pause_is_durable(first, || async {
        Arc::new(f.reopen()) as Arc<dyn Backend>
    })
    .await;
}
