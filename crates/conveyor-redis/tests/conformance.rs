//! The Redis backend passes the backend conformance suite, each case on its
//! own key prefix (deleted at the end of the case).

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    Arc::new(common::Namespace::new(clock).await)
}

conveyor_testkit::backend_conformance!(make);
