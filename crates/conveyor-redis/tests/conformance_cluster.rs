//! The conformance suite on a Redis Cluster of the binary's own (three
//! primaries with a replica each: `conveyor_testkit::redis_cluster::shared_url`),
//! reached by a `redis+cluster://` URL, every write waiting for the slot's
//! replica (`replicas=1`). Each case on its own key prefix with a hash tag of
//! its own, so the cases spread over the three primaries; the cluster refuses
//! a script that touches a key outside its namespace's slot. Built where
//! `redis-server` is (always under `CI=true`, where its absence fails the
//! build's tests).
#![cfg(has_redis_server)]

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock, SystemClock};
use conveyor_redis::RedisBackend;
use conveyor_testkit::redis_cluster;
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let url = tokio::task::spawn_blocking(|| redis_cluster::shared_url(""))
        .await
        .expect("start the cluster");
    let prefix = format!("{{conveyor-test-{:016x}}}:", fastrand::u64(..));
    let backend = RedisBackend::connect_with(&url, &prefix, clock)
        .await
        .expect("connect to the cluster")
        .with_replicas(1, std::time::Duration::from_secs(1));
    // Dropped on the test's runtime: the cleanup runs on a thread of its own.
    Arc::new(Scoped::new(backend, move || {
        let clean = std::thread::spawn(move || {
            conveyor_testkit::faults::block_on(async move {
                let b = RedisBackend::connect_with(&url, &prefix, Arc::new(SystemClock))
                    .await
                    .expect("connect to clean up");
                b.clear().await.expect("delete the case's keys");
            })
        });
        if clean.join().is_err() {
            eprintln!("could not delete a test's keys");
        }
    }))
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
