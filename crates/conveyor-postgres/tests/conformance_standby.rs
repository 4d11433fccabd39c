//! The conformance suite on a primary with a synchronous standby, through a
//! URL that names the standby first: every connection the backend opens
//! passes the read-only standby by (`target_session_attrs=read-write`, the
//! default with several hosts) and writes to the primary, every commit
//! waiting for the standby. One pair for the whole binary
//! (`conveyor_testkit::postgres_pair::shared`), a schema per case. Built
//! where the PostgreSQL server programs are (always under `CI=true`, where
//! their absence fails the build's tests).
#![cfg(has_postgres)]

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::postgres_pair;
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let pair = tokio::task::spawn_blocking(postgres_pair::shared)
        .await
        .expect("start the pair");
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?connect_timeout=5",
        pair.standby.port(),
        pair.primary.port()
    );
    let backend = PostgresBackend::connect_with(&url, &common::fresh_schema(), clock)
        .await
        .expect("connect to the pair");
    let schema = backend.schema().to_string();
    let primary = pair.primary.url();
    Arc::new(Scoped::new(backend, move || {
        common::drop_schema(&primary, &schema)
    }))
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
conveyor_testkit::schedule_conformance!(make);
