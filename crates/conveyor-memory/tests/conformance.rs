//! The memory backend passes the backend conformance suite.

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_memory::MemoryBackend;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::with_clock(clock))
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
conveyor_testkit::expansion_conformance!(make);
conveyor_testkit::schedule_conformance!(make);
