//! The conformance suite on a 3-server NATS cluster of the binary's own,
//! every stream kept by all three (`replicas=3`), through a URL naming the
//! three (`conveyor_testkit::nats_cluster::shared_url`). Each case in a namespace of its own. Built where `nats-server` 2.10 is
//! (always under `CI=true`, where its absence fails the build's tests).
#![cfg(has_nats_cluster_server)]

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_nats::{NatsBackend, NatsOptions};
use conveyor_testkit::nats_cluster;
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let url = tokio::task::spawn_blocking(|| nats_cluster::shared_url(""))
        .await
        .expect("start the cluster");
    let prefix = format!("cvt{:016x}", fastrand::u64(..));
    let options = NatsOptions {
        prefix: prefix.clone(),
        replicas: 3,
        ..NatsOptions::default()
    };
    let backend = NatsBackend::connect_options(&url, options, clock)
        .await
        .expect("connect to the cluster");
    Arc::new(Scoped::new(backend, move || {
        let clean = std::thread::spawn(move || {
            conveyor_testkit::faults::block_on(async move {
                let b =
                    NatsBackend::connect_with(&url, &prefix, Arc::new(conveyor_core::SystemClock))
                        .await
                        .expect("connect to clean up");
                b.destroy().await.expect("delete the case's namespace");
            })
        });
        if clean.join().is_err() {
            eprintln!("could not delete a test's namespace");
        }
    }))
}

conveyor_testkit::backend_conformance!(make;
    result_store: yes, inspection: yes, administration: yes, maintenance: yes,
    global_limits: no, registry: yes, queue_control: yes;
    priority: yes, unique_keys: yes, ordering_keys: no);
conveyor_testkit::workflow_conformance!(make);
