//! The RabbitMQ backend's conformance suite on a 3-node cluster of the
//! binary's own (`conveyor_testkit::rabbitmq_cluster::shared_url`), reached
//! by a URL naming the three nodes: quorum queues replicated on all three.
//! Each case on its own prefix; the cluster goes with the binary. The cases
//! this backend lacks are ignored with the reason, as in `conformance.rs`.
#![cfg(has_rabbitmq_server)]

mod common;

use std::sync::Arc;

use conveyor_amqp::{AmqpBackend, AmqpOptions};
use conveyor_core::{Backend, ManualClock};

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let url = tokio::task::spawn_blocking(|| conveyor_testkit::rabbitmq_cluster::shared_url(""))
        .await
        .expect("start the cluster");
    let backend = AmqpBackend::connect(
        &url,
        AmqpOptions::default().prefix(common::fresh_prefix()),
        clock,
    )
    .await
    .expect("connect to the cluster");
    Arc::new(backend)
}

conveyor_testkit::backend_conformance!(make;
    result_store: no, inspection: no, administration: no, maintenance: no, global_limits: no,
    registry: no, queue_control: no; priority: no, unique_keys: no, ordering_keys: no);
