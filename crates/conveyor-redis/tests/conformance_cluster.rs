//! The conformance suite on a Redis Cluster of the binary's own (three
//! primaries with a replica each: `conveyor_testkit::redis_cluster::shared_url`),
//! reached by a `redis+cluster://` URL, every write waiting for the slot's
//! replica (`replicas=1`). Each case on its own key prefix with a hash tag of
//! its own, so the cases spread over the three primaries; the cluster refuses
//! a script that touches a key outside its namespace's slot. Built where
//! `redis-server` is (always under `CI=true`, where its absence fails the
//! build's tests).
#![cfg(has_redis_server)]

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_testkit::redis_cluster;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let url = tokio::task::spawn_blocking(|| redis_cluster::shared_url(""))
        .await
        .expect("start the cluster");
    let prefix = format!("{{conveyor-test-{:016x}}}:", fastrand::u64(..));
    common::replicated_case(url, prefix, clock).await
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
