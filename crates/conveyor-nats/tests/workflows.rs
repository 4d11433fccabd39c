//! Workflows on NATS across processes: a second handle on the same
//! namespace keeps a graph that an expansion made by the first leaves
//! stale, and reads the expansion back from the entry that lists it.

mod common;

use std::sync::Arc;

use conveyor_core::{Clock, ManualClock, Timestamp};
use conveyor_nats::NatsBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expansion_is_seen_from_another_process() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let first = common::fresh(clock.clone()).await;
    let other = NatsBackend::connect_with(&common::nats_url(), first.prefix(), clock)
        .await
        .expect("connect to the test NATS server");
    conveyor_testkit::conformance::an_expansion_is_seen_from_another_handle(
        common::scoped(first),
        Arc::new(other),
    )
    .await;
}
