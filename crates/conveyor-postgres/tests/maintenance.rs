//! Maintenance against a real server: `recover_expired` vacuums the tasks table
//! once enough dead rows piled up.

mod common;

use conveyor_core::parts::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{Backend, Finish, NewTask, ReserveParams, SystemClock};
use conveyor_postgres::PostgresBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_expired_vacuums_a_churned_table() {
    let url = common::url();
    let guard = common::SchemaGuard::fresh();
    let schema = guard.0.clone();
    let b = PostgresBackend::builder(&url)
        .schema(&schema)
        .clock(Arc::new(SystemClock))
        .vacuum_every(Some(Duration::ZERO))
        .connect()
        .await
        .expect("connect");
    // 12,000 tasks through reserve and complete: 24,000 dead row versions.
    for _ in 0..12 {
        b.enqueue_many((0..1000).map(|_| NewTask::new("t", Vec::new())).collect())
            .await
            .expect("enqueue");
    }
    let queues = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    loop {
        let got = b
            .reserve(ReserveParams::new(&queues, 1000, Duration::from_secs(60)))
            .await
            .expect("reserve");
        if got.is_empty() {
            break;
        }
        let reports = got
            .iter()
            .map(|r| Finish::complete(r.lease.clone()))
            .collect();
        b.finish(reports).await.expect("finish");
    }
    // Statistics reach other sessions within about a second; keep calling
    // maintenance (as a worker does) until the vacuum shows.
    let client = common::client().await;
    let table = format!("\"{schema}\".\"tasks\"");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert_eq!(b.recover_expired().await.expect("recover"), 0);
        let row = client
            .query_one(
                "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
                &[&table],
            )
            .await
            .expect("table statistics");
        if row.get::<_, bool>(0) {
            break;
        }
        assert!(Instant::now() < deadline, "no vacuum ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(b);
}
