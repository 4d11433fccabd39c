//! The RabbitMQ backend with a store beside it keeping its task records
//! (a Redis, as `results=redis://…` gives) against the backend conformance
//! suite: the cases of the result store, inspection and administration
//! parts run too (listing, counting, requeueing and purging through the
//! kept records; cancelling is refused, so its case is ignored), and the
//! registry's (the keeper's own). Delays run on the broker's clock (the
//! ladder's TTLs), so the cases that move a manual clock to make a delayed
//! task due are ignored; `behaviour.rs` tests delays in real time.

mod common;

use std::sync::Arc;

use conveyor_amqp::{AmqpBackend, AmqpOptions};
use conveyor_core::{Backend, ManualClock};
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let prefix = common::fresh_prefix();
    let backend = AmqpBackend::connect_keeping(
        &common::amqp_url(),
        AmqpOptions::default().prefix(prefix.clone()),
        clock,
        common::keeper(&prefix).await,
    )
    .await
    .expect("connect to the test RabbitMQ and Redis");
    let options = backend.options().clone();
    Arc::new(Scoped::new(backend, move || {
        common::delete_namespace_blocking(
            options,
            &[
                "default", "low", "high", "other", "fu-next", "fu-batch", "fu-crash", "q1", "q2",
                "q3",
            ],
        )
    }))
}

conveyor_testkit::backend_conformance!(make;
    result_store: yes, inspection: yes, administration: yes, maintenance: no, global_limits: no,
    registry: yes, queue_control: no; priority: no, unique_keys: no, ordering_keys: no,
    manual_time: no, cancel: no);

// Workflows, kept in the store beside the broker. A broker's lease is its
// channel (no clock the test moves, no maintenance part), and a task
// cannot be cancelled alone: those cases are ignored, and
// `workflows.rs` tests their RabbitMQ forms.
conveyor_testkit::workflow_conformance!(make; maintenance: no, cancel: no);
conveyor_testkit::expansion_conformance!(make);
