//! The fault suite (`conveyor_testkit::backend_faults!`) on NATS JetStream: a
//! private server killed and restarted mid-run, and the shared server behind
//! a fault-injecting proxy (black-holed, slowed, connections cut).

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_testkit::faults::FaultTarget;
use conveyor_testkit::nats_server::TempNats;

fn target() -> FaultTarget {
    FaultTarget {
        name: "nats",
        service: SocketAddr::from(([127, 0, 0, 1], 4222)),
        url: |addr, ns, _| format!("nats://{addr}?prefix={ns}"),
        scheme: conveyor_nats::SCHEME,
        keeper: None,
        private_server: || Some(Box::new(TempNats::start())),
        lease: Duration::from_secs(2),
        forget,
        prefetch: false,
    }
}

/// Deletes the case's streams and bucket on the shared server.
fn forget(ns: &str) {
    let ns = ns.to_string();
    conveyor_testkit::faults::block_on(async move {
        let b = conveyor_nats::NatsBackend::connect_with(
            "nats://127.0.0.1:4222",
            &ns,
            std::sync::Arc::new(conveyor_core::SystemClock),
        )
        .await
        .expect("connect to clean up");
        b.destroy().await.expect("delete the case's namespace");
    });
}

conveyor_testkit::backend_faults!(target();
    private_server: has_nats_server, "nats-server is not installed (Debian package nats-server)"; workflows, schedules);
