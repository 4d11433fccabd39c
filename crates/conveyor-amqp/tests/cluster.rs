//! RabbitMQ as a 3-node cluster (`docs/high-availability.md`): quorum
//! queues on three nodes of the test's own (`conveyor_testkit::rabbitmq_cluster`),
//! reached by a URL naming all three; the node leading the work queue is
//! SIGKILLed mid-run and the worker moves to a live node and goes on.
#![cfg(has_rabbitmq_server)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_testkit::faults::{FaultCluster, FaultTarget};
use conveyor_testkit::rabbitmq_cluster::RabbitCluster;
use conveyor_testkit::rabbitmq_server::TempRabbit;

/// The fault case's namespace on the cluster, its task records in the
/// Redis beside it.
fn query(ns: &str) -> String {
    format!(
        "prefix={ns}&results={}?prefix={}",
        common::results_url(),
        common::records_prefix(ns)
    )
}

fn cluster() -> Box<dyn FaultCluster> {
    let mut c = RabbitCluster::start();
    c.query = query;
    Box::new(c)
}

fn target() -> FaultTarget {
    FaultTarget {
        name: "amqp",
        service: SocketAddr::from(([127, 0, 0, 1], 5672)),
        url: |addr, ns, _| format!("amqp://guest:guest@{addr}/%2f?{}", query(ns)),
        scheme: conveyor_amqp::SCHEME,
        keeper: Some(conveyor_redis::SCHEME),
        private_server: || Some(Box::new(TempRabbit::start(None))),
        lease: Duration::from_secs(2),
        forget: |_| {},
        prefetch: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_follows_a_queue_leader_change() {
    conveyor_testkit::faults::failover_mid_run(target(), cluster).await;
}
