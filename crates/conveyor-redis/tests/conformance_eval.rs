//! The backend conformance suite again with the Lua code sent as scripts
//! (`EVALSHA`), the form for servers without functions.

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_redis::{RedisBackend, RedisTls, ScriptMode};
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let backend = RedisBackend::connect_using(
        &common::redis_url(),
        &common::fresh_prefix(),
        clock,
        &RedisTls::default(),
        ScriptMode::Eval,
    )
    .await
    .expect("connect to the test Redis");
    assert_eq!(backend.script_mode(), ScriptMode::Eval);
    let prefix = backend.prefix().to_string();
    Arc::new(Scoped::new(backend, move || common::delete_prefix(&prefix)))
}

conveyor_testkit::backend_conformance!(make);
conveyor_testkit::record_keeper_conformance!(make);
conveyor_testkit::workflow_conformance!(make);
conveyor_testkit::schedule_conformance!(make);
conveyor_testkit::expansion_conformance!(make);
