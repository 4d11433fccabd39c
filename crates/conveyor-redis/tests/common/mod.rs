//! Helpers shared by the Redis backend's tests: a fresh namespace per test on
//! the machine's Redis, deleted when the test ends (also when it fails).

#![allow(dead_code)]

use std::sync::Arc;

use conveyor_core::{Clock, ManualClock};
use conveyor_redis::RedisBackend;

/// The Redis the tests use (`CONVEYOR_REDIS_URL`, else the local default).
pub fn redis_url() -> String {
    std::env::var("CONVEYOR_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("conveyor-test-{:016x}:", fastrand::u64(..))
}

/// Every key under `prefix`, sorted.
pub fn keys_under(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client.get_connection().expect("redis connection");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .expect("KEYS");
    keys.sort();
    keys
}

/// Deletes every key under `prefix` (SCAN + DEL), synchronously.
pub fn delete_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
        else {
            return;
        };
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A backend on a fresh prefix whose keys are deleted when the last clone is
/// dropped.
#[derive(Debug)]
pub struct Namespace {
    pub backend: RedisBackend,
}

impl Namespace {
    /// A fresh namespace reading time from `clock`.
    pub async fn new(clock: Arc<dyn Clock>) -> Self {
        let backend = RedisBackend::connect_with(&redis_url(), &fresh_prefix(), clock)
            .await
            .expect("connect to the test Redis");
        Self { backend }
    }

    /// A fresh namespace on a manual clock.
    pub async fn manual() -> (Self, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (Self::new(clock.clone()).await, clock)
    }

    /// Another backend (its own connection) on the same namespace.
    pub async fn another(&self, clock: Arc<dyn Clock>) -> RedisBackend {
        RedisBackend::connect_with(&redis_url(), self.backend.prefix(), clock)
            .await
            .expect("connect to the test Redis")
    }

    pub fn prefix(&self) -> &str {
        self.backend.prefix()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        delete_prefix(self.backend.prefix());
    }
}

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_testkit::faults::FaultTarget;
use conveyor_testkit::servers::TempRedis;

/// The fault suite's view of Redis: the shared server, or a private one
/// to kill.
pub fn fault_target() -> FaultTarget {
    FaultTarget {
        name: "redis",
        service: SocketAddr::from(([127, 0, 0, 1], 6379)),
        url: |addr, ns, _| format!("redis://{addr}/0?prefix={ns}:"),
        scheme: conveyor_redis::SCHEME,
        keeper: None,
        private_server: || Some(Box::new(TempRedis::start())),
        lease: Duration::from_secs(2),
        forget,
        prefetch: false,
    }
}

/// Deletes the case's keys on the shared server.
pub fn forget(ns: &str) {
    let prefix = format!("{ns}:");
    conveyor_testkit::faults::block_on(async move {
        let b = conveyor_redis::RedisBackend::connect_with(
            "redis://127.0.0.1:6379/0",
            &prefix,
            std::sync::Arc::new(conveyor_core::SystemClock),
        )
        .await
        .expect("connect to clean up");
        b.clear().await.expect("delete the case's keys");
    });
}

/// A conformance case's backend on `url` (a store of the binary's own: a
/// Sentinel set, a cluster) under `prefix`, every write waiting for one
/// replica; its keys deleted when the case ends.
pub async fn replicated_case(
    url: String,
    prefix: String,
    clock: Arc<ManualClock>,
) -> Arc<dyn conveyor_core::Backend> {
    let backend = RedisBackend::connect_with(&url, &prefix, clock)
        .await
        .expect("connect")
        .with_replicas(1, Duration::from_secs(1));
    // Dropped on the test's runtime: the cleanup runs on a thread of its own.
    Arc::new(conveyor_testkit::Scoped::new(backend, move || {
        let clean = std::thread::spawn(move || {
            conveyor_testkit::faults::block_on(async move {
                let b =
                    RedisBackend::connect_with(&url, &prefix, Arc::new(conveyor_core::SystemClock))
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
