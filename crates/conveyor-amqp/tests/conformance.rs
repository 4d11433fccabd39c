//! The RabbitMQ backend against the backend conformance suite, each case on
//! its own prefix (its queues and ladder deleted at the end).
//!
//! RabbitMQ keeps messages, not task records: no result store, inspection,
//! administration, maintenance, global limits or registry, and no
//! priorities, unique keys or ordering keys. Those cases are listed as
//! ignored with the reason; `behaviour.rs`, `custody.rs` and `broker.rs`
//! test what this backend does instead, in real time.

mod common;

use std::sync::Arc;

use conveyor_amqp::{AmqpBackend, AmqpOptions};
use conveyor_core::{Backend, ManualClock};
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let backend = AmqpBackend::connect(
        &common::amqp_url(),
        AmqpOptions::default().prefix(common::fresh_prefix()),
        clock,
    )
    .await
    .expect("connect to the test RabbitMQ");
    let options = backend.options().clone();
    Arc::new(Scoped::new(backend, move || {
        common::delete_namespace_blocking(options, &["default", "low", "high", "other"])
    }))
}

conveyor_testkit::backend_conformance!(make;
    result_store: no, inspection: no, administration: no, maintenance: no, global_limits: no,
    registry: no, queue_control: no; priority: no, unique_keys: no, ordering_keys: no);
