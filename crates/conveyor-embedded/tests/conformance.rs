//! The embedded backend passes the backend conformance suite, each case on its
//! own file.

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_embedded::EmbeddedBackend;
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("conformance.db");
    let backend = EmbeddedBackend::open_with_clock(path, clock).expect("open");
    // The directory (and the file in it) goes when the case is done.
    Arc::new(Scoped::new(backend, move || drop(dir)))
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
conveyor_testkit::schedule_conformance!(make);
conveyor_testkit::expansion_conformance!(make);
