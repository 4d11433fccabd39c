//! The conformance suite through Redis Sentinel: a primary with a replica
//! and three sentinels of the binary's own
//! (`conveyor_testkit::redis_sentinels::shared_url`), reached by a
//! `redis+sentinel://` URL, every write waiting for the replica
//! (`replicas=1`). Each case on its own key prefix. Built where
//! `redis-server` is (always under `CI=true`, where its absence fails the
//! build's tests).
#![cfg(has_redis_server)]

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_testkit::redis_sentinels;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let url = tokio::task::spawn_blocking(|| redis_sentinels::shared_url(""))
        .await
        .expect("start the sentinels");
    let prefix = format!("conveyor-test-{:016x}:", fastrand::u64(..));
    common::replicated_case(url, prefix, clock).await
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
