//! Searching a file with more tasks than one page may read: a common state
//! is walked by id and its pages stop at their budget (saying where), a rare
//! state is found through its own index at once, and every match is found
//! exactly once. Also: a file from before the kept counts gets them when it
//! is opened.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::Fixture;
use conveyor_core::parts::*;
use conveyor_core::{Backend, Count, ListParams, NewTask, TaskState};
use conveyor_testkit::conformance::pages_stop_at_their_budget;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stop_at_their_budget_and_find_every_match() {
    let f = Fixture::new();
    let b: Arc<dyn Backend> = Arc::new(f.reopen());
    pages_stop_at_their_budget(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_before_kept_counts_gets_them() {
    let Fixture {
        dir,
        clock,
        backend: b,
    } = Fixture::new();
    let path = dir.path().join("tasks.db");
    let batch: Vec<NewTask> = (0..30)
        .map(|i| {
            NewTask::new("h", format!("{{\"n\":{i}}}").into_bytes()).queue(if i % 3 == 0 {
                "a"
            } else {
                "b"
            })
        })
        .collect();
    b.enqueue_many(batch).await.unwrap();
    let before = b.stats().await.unwrap();
    b.close().await;
    // Back to version 6: no kept counts.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE task_counts; PRAGMA user_version = 6;")
        .unwrap();
    drop(conn);
    let again = conveyor_embedded::EmbeddedBackend::open_with_clock(path, clock).unwrap();
    assert_eq!(again.stats().await.unwrap(), before);
    let a = ListParams::new(TaskState::Available).queue("a");
    assert_eq!(again.count(&a, None).await.unwrap(), Count::exact(10));
}
