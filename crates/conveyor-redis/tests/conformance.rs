//! The Redis backend passes the backend conformance suite, each case on its
//! own key prefix (deleted at the end of the case).

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_redis::RedisBackend;
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let backend = RedisBackend::connect_with(&common::redis_url(), &common::fresh_prefix(), clock)
        .await
        .expect("connect to the test Redis");
    let prefix = backend.prefix().to_string();
    Arc::new(Scoped::new(backend, move || common::delete_prefix(&prefix)))
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::record_keeper_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
conveyor_testkit::schedule_conformance!(make);
conveyor_testkit::expansion_conformance!(make);
