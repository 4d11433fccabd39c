//! The PostgreSQL backend passes the backend conformance suite, each case in a
//! schema of its own that is dropped afterwards.

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let url = common::url();
    let backend = PostgresBackend::connect_with(&url, &common::fresh_schema(), clock)
        .await
        .expect("connect to the test server");
    let schema = backend.schema().to_string();
    Arc::new(Scoped::new(backend, move || {
        common::drop_schema(&url, &schema)
    }))
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
conveyor_testkit::schedule_conformance!(make);
conveyor_testkit::expansion_conformance!(make);
