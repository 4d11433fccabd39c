//! The fault suite (`conveyor_testkit::backend_faults!`) on Redis: a private
//! server killed and restarted mid-run, and the shared server behind a
//! fault-injecting proxy (black-holed, slowed, connections cut).

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_testkit::faults::FaultTarget;
use conveyor_testkit::servers::TempRedis;

fn target() -> FaultTarget {
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
fn forget(ns: &str) {
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

conveyor_testkit::backend_faults!(target();
    private_server: has_redis_server, "redis-server is not installed (Debian package redis-server)"; workflows, schedules);
