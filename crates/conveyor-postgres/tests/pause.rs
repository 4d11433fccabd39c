//! Paused queues live in the schema: a backend on another pool (as another
//! process would have) honours a pause made through the first, and a pause
//! outlives the backend that made it. The reserve statements skip a paused
//! queue with one probe of the small `paused_queues` table.

mod common;

use std::sync::Arc;

use conveyor_core::{Backend, ManualClock};
use conveyor_postgres::PostgresBackend;

async fn other(scoped: &common::Scoped, clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    let b = PostgresBackend::connect_with(&common::url(), scoped.backend.schema(), clock)
        .await
        .expect("connect");
    Arc::new(b)
}

/// A pause made through one backend holds another's reservations back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_connection_honours_a_pause() {
    let clock = Arc::new(ManualClock::default());
    let scoped = common::Scoped::new(clock.clone()).await;
    let pauser: Arc<dyn Backend> = Arc::new(scoped.backend.clone());
    let reserver = other(&scoped, clock.clone()).await;
    conveyor_testkit::conformance::pause_is_shared(pauser, reserver, clock).await;
}

/// A pause survives the backend that made it: a new one on the schema
/// still holds the queue back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_reconnecting() {
    let clock = Arc::new(ManualClock::default());
    let scoped = common::Scoped::new(clock.clone()).await;
    let first = other(&scoped, clock.clone()).await;
    conveyor_testkit::conformance::pause_is_durable(first, || other(&scoped, clock.clone())).await;
}

/// The pause check costs one probe per statement, not one per candidate
/// row: the plan of the reserve statement evaluates it once (an InitPlan or
/// a one-time filter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_check_runs_once_per_statement() {
    let scoped = common::Scoped::new(Arc::new(ManualClock::default())).await;
    let client = common::client().await;
    let schema = scoped.backend.schema();
    let plan = client
        .query(
            &format!(
                "EXPLAIN SELECT t.id FROM \"{schema}\".tasks t WHERE t.queue = 'q' \
                 AND NOT EXISTS (SELECT 1 FROM \"{schema}\".paused_queues pq WHERE pq.queue = 'q')"
            ),
            &[],
        )
        .await
        .expect("explain");
    let plan: Vec<String> = plan.iter().map(|r| r.get(0)).collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("One-Time Filter") || plan.contains("InitPlan"),
        "the pause check is not evaluated once:\n{plan}"
    );
}
