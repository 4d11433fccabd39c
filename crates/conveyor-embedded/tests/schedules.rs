//! Schedules in the file: two handles on one file (two processes) firing
//! at the same moment enqueue each fire time once, and a file of schema
//! version 13 gains the table when opened.

mod common;

use std::sync::Arc;

use common::Fixture;
use conveyor_core::schedule::Schedule;
use conveyor_core::{Schedules, Timestamp};
use conveyor_embedded::EmbeddedBackend;
use serde_json::json;

/// Every second; two handles fire for ten seconds, each call at the same
/// moment from both: one task per fire time, none missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_firing_at_once_enqueue_each_fire_time_once() {
    let f = Fixture::new();
    let other = Arc::new(f.reopen());
    let start = 1_800_000_000_000;
    f.clock.set(Timestamp(start));
    let s = Schedule::declared("tick", json!({"every": "1s", "handler": "tick"})).unwrap();
    f.backend.put_schedule(&s).await.unwrap();
    let mut fired = Vec::new();
    for k in 1..=10 {
        let now = Timestamp(start + k * 1000 + 5);
        let (a, b) = tokio::join!(f.backend.fire_due(now), other.fire_due(now));
        fired.extend(a.unwrap());
        fired.extend(b.unwrap());
    }
    let mut times: Vec<i64> = fired.iter().map(|f| f.at.0).collect();
    times.sort_unstable();
    let expected: Vec<i64> = (1..=10).map(|k| start + k * 1000).collect();
    assert_eq!(times, expected, "each fire time once");
}

/// A file of schema version 13 (no `schedules` table) is migrated when
/// opened, and its schedules work.
#[tokio::test]
async fn a_version_13_file_gains_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    drop(EmbeddedBackend::open(&path).unwrap());
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch("DROP TABLE schedules; PRAGMA user_version = 13")
            .unwrap();
    }
    let b = EmbeddedBackend::open(&path).unwrap();
    let s = Schedule::declared("nightly", json!({"cron": "0 3 * * *", "handler": "h"})).unwrap();
    let kept = b.put_schedule(&s).await.unwrap();
    assert!(kept.next_fire.is_some());
    assert_eq!(b.schedules().await.unwrap().len(), 1);
}

/// A stored declaration that no longer reads (another version wrote it, or
/// the row was damaged) is skipped by the leader's pass, and the other
/// schedules go on firing; listing them says which one does not read.
#[tokio::test]
async fn a_schedule_that_does_not_read_stops_no_other() {
    let f = Fixture::new();
    let start = 1_800_000_000_000;
    f.clock.set(Timestamp(start));
    for name in ["a", "b"] {
        let s = Schedule::declared(name, json!({"every": "1s", "handler": "tick"})).unwrap();
        f.backend.put_schedule(&s).await.unwrap();
    }
    {
        let raw = rusqlite::Connection::open(f.path()).unwrap();
        raw.execute(
            "UPDATE schedules SET declared = ?1 WHERE name = 'a'",
            [br#"{"every":"1s","handler":"tick","colour":"red"}"#.to_vec()],
        )
        .unwrap();
    }
    let fired = f.backend.fire_due(Timestamp(start + 1_010)).await.unwrap();
    let names: Vec<&str> = fired.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    let e = f.backend.schedules().await.unwrap_err().to_string();
    assert!(e.contains("\"a\"") && e.contains("colour"), "{e}");
}
