//! The NATS backend passes the backend conformance suite, each case in a
//! namespace of its own (streams and bucket under a fresh prefix, deleted
//! at the end of the case). It has every part but global limits (queue
//! control and workflows included), and every core capability but
//! ordering keys.

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    common::scoped(common::fresh(clock).await)
}

conveyor_testkit::backend_conformance!(make;
    result_store: yes, inspection: yes, administration: yes, maintenance: yes,
    global_limits: no, registry: yes, queue_control: yes;
    priority: yes, unique_keys: yes, ordering_keys: no);
conveyor_testkit::workflow_conformance!(make);
conveyor_testkit::schedule_conformance!(make);
conveyor_testkit::expansion_conformance!(make);
