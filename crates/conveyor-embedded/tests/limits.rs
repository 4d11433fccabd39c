//! Params and results at, just under and just over the value limit
//! (`conveyor_testkit::value_limits`), set low by the URL's `max_value=`;
//! SQLite's own limit (half of 1,000,000,000 bytes a row, which holds both
//! values) is the same check at a size too large to test here.

use std::sync::Arc;

use conveyor_core::Backend;
use conveyor_embedded::EmbeddedBackend;
use conveyor_testkit::value_limits;

const CAP: usize = 64 << 10;

async fn capped(dir: &tempfile::TempDir) -> Arc<dyn Backend> {
    let url = format!(
        "embedded://{}?max_value={CAP}",
        dir.path().join("q.db").display()
    );
    conveyor_embedded::SCHEME.open(&url).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_at_a_url_cap() {
    let dir = tempfile::tempdir().expect("temp dir");
    value_limits::values_at_the_limit(capped(&dir).await, CAP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stores_a_result_over_the_cap_as_the_attempts_failure() {
    let dir = tempfile::tempdir().expect("temp dir");
    value_limits::a_worker_stores_the_refusal(capped(&dir).await, CAP).await;
}

#[test]
fn the_default_limit_is_half_a_sqlite_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let b = EmbeddedBackend::open(dir.path().join("q.db")).expect("open");
    assert_eq!(b.max_value(), (1_000_000_000 - (64 << 10)) / 2);
    assert_eq!(b.with_max_value(10).max_value(), 10);
}
