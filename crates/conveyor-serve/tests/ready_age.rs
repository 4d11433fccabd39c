//! "Oldest ready" counts from when a task became ready, not from when it was
//! enqueued: a task delayed an hour is not an hour late the moment it is
//! due. Checked where people and alerts read it: the stats API, the
//! overview and the `conveyor_queue_oldest_ready_age_seconds` gauge.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::get;
use conveyor::durable::{Backend, MemoryBackend, NewTask};
use conveyor::{ManualClock, Timestamp};
use conveyor_serve::ServeOptions;
use serde_json::Value;

const HOUR: Duration = Duration::from_secs(3_600);

/// The gauge's value for `queue` in an OpenMetrics text.
fn gauge(text: &str, queue: &str) -> f64 {
    let prefix = format!("conveyor_queue_oldest_ready_age_seconds{{queue=\"{queue}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gauge for {queue} in {text}"))
}

/// The stats API's `oldest_ready` of `queue`.
fn oldest_ready(stats: &Value, queue: &str) -> Timestamp {
    let q = stats["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == queue))
        .unwrap_or_else(|| panic!("no {queue} in {stats}"));
    let text = q["oldest_ready"].as_str().expect("a time");
    let t = humantime::parse_rfc3339(text).expect("RFC 3339");
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    Timestamp(i64::try_from(ms).expect("fits"))
}

#[tokio::test]
async fn a_delayed_task_is_ready_from_its_due_time() {
    // The store's clock starts an hour and five seconds ago.
    let now = Timestamp::now();
    let start = now.minus(HOUR + Duration::from_secs(5));
    let clock = Arc::new(ManualClock::new(start));
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::with_clock(clock.clone()));
    // Delayed an hour: due five seconds ago. And one ready since the start.
    backend
        .enqueue(
            NewTask::new("h", b"null".to_vec())
                .queue("delayed")
                .delay(HOUR),
        )
        .await
        .expect("enqueue");
    backend
        .enqueue(NewTask::new("h", b"null".to_vec()).queue("waiting"))
        .await
        .expect("enqueue");
    clock.set(now);
    let app = conveyor_serve::router(backend, ServeOptions::new());

    let (status, stats) = get(&app, "/api/v1/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(
        oldest_ready(&stats, "delayed"),
        start.plus(HOUR),
        "its due time"
    );
    assert_eq!(oldest_ready(&stats, "waiting"), start, "its enqueue time");

    let (_, metrics) = get(&app, "/metrics").await;
    let metrics = metrics.as_str().expect("text");
    let delayed = gauge(metrics, "delayed");
    assert!((5.0..600.0).contains(&delayed), "delayed: {delayed} s");
    assert!(gauge(metrics, "waiting") >= 3_605.0, "{metrics}");

    let (_, overview) = get(&app, "/").await;
    let overview = overview.as_str().expect("html");
    let row = overview
        .split("<tr data-queue=\"delayed\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the delayed queue's row");
    assert!(
        !row.contains("1h"),
        "an hour late the moment it is due: {row}"
    );
}
