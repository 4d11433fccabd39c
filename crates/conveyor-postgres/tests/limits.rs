//! Params and results at, just under and just over the value limit
//! (`conveyor_testkit::value_limits`), set low by `max_value`; PostgreSQL's
//! own limit (1 GiB a field) is the same check at a size too large to
//! test here.

mod common;

use std::sync::Arc;

use conveyor_core::Backend;
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::value_limits;

const CAP: usize = 64 << 10;

async fn capped(schema: &str) -> Arc<dyn Backend> {
    let b = PostgresBackend::builder(&common::url())
        .schema(schema)
        .max_value(CAP)
        .connect()
        .await
        .expect("connect");
    assert_eq!(b.max_value(), CAP);
    Arc::new(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_at_a_cap() {
    let schema = common::SchemaGuard::fresh();
    value_limits::values_at_the_limit(capped(&schema.0).await, CAP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stores_a_result_over_the_cap_as_the_attempts_failure() {
    let schema = common::SchemaGuard::fresh();
    value_limits::a_worker_stores_the_refusal(capped(&schema.0).await, CAP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_is_postgres_own() {
    let schema = common::SchemaGuard::fresh();
    let b = PostgresBackend::builder(&common::url())
        .schema(&schema.0)
        .connect()
        .await
        .expect("connect");
    assert_eq!(b.max_value(), (1 << 30) - 1 - (64 << 10));
}
