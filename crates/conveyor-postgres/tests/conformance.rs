//! The PostgreSQL backend passes the backend conformance suite, each case in a
//! schema of its own that is dropped afterwards.

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    Arc::new(common::Scoped::new(clock).await)
}

conveyor_testkit::backend_conformance!(make);
