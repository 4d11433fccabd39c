//! Helpers shared by the NATS backend's tests: a fresh namespace per test on
//! the machine's NATS server, deleted when the test ends (also when it
//! fails).

#![allow(dead_code)]

use std::sync::Arc;

use conveyor_core::{Backend, Clock};
use conveyor_nats::NatsBackend;
use conveyor_testkit::Scoped;

/// The NATS server the tests use (`CONVEYOR_NATS_URL`, else the local default).
pub fn nats_url() -> String {
    std::env::var("CONVEYOR_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// A prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("cvt{:016x}", fastrand::u64(..))
}

/// Deletes the namespace `prefix` on `url`, synchronously (from a thread of
/// its own, so it works inside and outside a runtime).
pub fn destroy(url: &str, prefix: &str) {
    let (url, prefix) = (url.to_string(), prefix.to_string());
    let done = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let clock = Arc::new(conveyor_core::SystemClock);
            if let Ok(b) = NatsBackend::connect_with(&url, &prefix, clock).await {
                let _ = b.destroy().await;
            }
        });
    });
    let _ = done.join();
}

/// A backend in a fresh namespace on the test server, reading `clock`.
pub async fn fresh(clock: Arc<dyn Clock>) -> NatsBackend {
    NatsBackend::connect_with(&nats_url(), &fresh_prefix(), clock)
        .await
        .expect("connect to the test NATS server")
}

/// `backend` wrapped so its namespace is deleted when it is dropped.
pub fn scoped(backend: NatsBackend) -> Arc<dyn Backend> {
    let prefix = backend.prefix().to_string();
    Arc::new(Scoped::new(backend, move || destroy(&nats_url(), &prefix)))
}

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_testkit::faults::FaultTarget;
use conveyor_testkit::nats_server::TempNats;

/// The fault suite's view of NATS: the shared server, or a private one
/// to kill.
pub fn fault_target() -> FaultTarget {
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
pub fn forget(ns: &str) {
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
