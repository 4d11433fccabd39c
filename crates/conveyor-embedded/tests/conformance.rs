//! The embedded backend passes the backend conformance suite, each case on its
//! own file.

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_embedded::EmbeddedBackend;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("conformance.db");
    // The directory lives as long as the test process; each case has its own.
    std::mem::forget(dir);
    Arc::new(EmbeddedBackend::open_with_clock(path, clock).expect("open"))
}

conveyor_testkit::backend_conformance!(make);
