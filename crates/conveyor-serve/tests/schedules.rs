//! Schedules through the HTTP API and the dashboard, in process, on a real
//! in-memory backend: declared, read back, fired now (the task exists and
//! its outcome shows), paused and resumed, removed; bad declarations and
//! unknown names answer 400 and 404, a backend without the part 501, and
//! read-only shows no button.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{app, call, get, location, page, post, send};
use conveyor::durable::{Backend, MemoryBackend};
use conveyor::TaskId;
use conveyor_serve::ServeOptions;
use serde_json::{json, Value};

async fn put(app: &axum::Router, name: &str, body: Value) -> (StatusCode, Value) {
    call(
        app,
        "PUT",
        &format!("/api/v1/schedules/{name}"),
        Some(body),
        &[],
    )
    .await
}

#[tokio::test]
async fn schedules_are_declared_fired_paused_and_removed_through_the_api() {
    let (app, backend) = app(ServeOptions::new());
    let (status, s) = put(
        &app,
        "nightly",
        json!({"cron": "30 2 * * *", "timezone": "Europe/Paris", "handler": "report",
               "params": {"day": "yesterday"}, "queue": "reports"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["name"], "nightly");
    assert!(
        s["timing"]
            .as_str()
            .is_some_and(|t| t.contains("Europe/Paris")),
        "{s}"
    );
    assert!(s["next_fire_ms"].as_i64().is_some(), "{s}");
    assert_eq!(s["declared"]["handler"], "report");
    assert_eq!(s["paused"], false);

    let (status, fired) = post(&app, "/api/v1/schedules/nightly/trigger", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{fired}");
    let task: u64 = fired["task"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("an id");
    let record = backend
        .get(TaskId(task))
        .await
        .expect("get")
        .expect("the task");
    assert_eq!(
        (record.handler.as_str(), record.queue.as_str()),
        ("report", "reports")
    );
    let (_, read) = get(&app, "/api/v1/schedules/nightly").await;
    assert_eq!(read["last_task"], json!(task.to_string()), "{read}");
    assert_eq!(read["last_state"], "available", "{read}");

    let (status, paused) = post(&app, "/api/v1/schedules/nightly/pause", json!({})).await;
    assert_eq!((status, &paused["paused"]), (StatusCode::OK, &json!(true)));
    let (_, resumed) = post(&app, "/api/v1/schedules/nightly/resume", json!({})).await;
    assert_eq!(resumed["paused"], false, "{resumed}");
    put(&app, "every", json!({"every": "30s", "handler": "tick"})).await;
    let (_, list) = get(&app, "/api/v1/schedules").await;
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["every", "nightly"], "by name");

    for (bad, says) in [
        (json!({"handler": "h"}), "cron and every"),
        (json!({"cron": "61 * * * *", "handler": "h"}), "cron"),
        (
            json!({"every": "1s", "handler": "h", "unique_key": "k"}),
            "unique_key",
        ),
        (
            json!({"cron": "0 * * * *", "handler": "h", "timezone": "Mars/Olympus"}),
            "Mars",
        ),
    ] {
        let (status, answer) = put(&app, "bad", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["error"].as_str().is_some_and(|m| m.contains(says)),
            "{says}: {answer}"
        );
    }
    for path in [
        "/api/v1/schedules/none/pause",
        "/api/v1/schedules/none/trigger",
    ] {
        let (status, _) = post(&app, path, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = get(&app, "/api/v1/schedules/none").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = call(&app, "DELETE", "/api/v1/schedules/nightly", None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&app, "DELETE", "/api/v1/schedules/nightly", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        backend.get(TaskId(task)).await.expect("get").is_some(),
        "a fire already enqueued stays"
    );

    let core_only: Arc<dyn Backend> =
        Arc::new(conveyor_testkit::Scoped::core_only(MemoryBackend::new()));
    let bare = conveyor_serve::router(core_only, ServeOptions::new());
    let (status, answer) = get(&bare, "/api/v1/schedules").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{answer}");
    assert!(page(&bare, "/schedules").await.contains("No schedules:"));
}

#[tokio::test]
async fn the_dashboard_lists_schedules_and_its_buttons_act() {
    let (app, backend) = app(ServeOptions::new());
    assert!(page(&app, "/schedules")
        .await
        .contains("id=\"schedules-empty\""));
    put(
        &app,
        "tick",
        json!({"every": "1m", "handler": "tick", "queue": "clock"}),
    )
    .await;
    let html = page(&app, "/schedules").await;
    assert!(html.contains("id=\"schedule-tick\""), "{html}");
    assert!(html.contains("every 1m"), "{html}");
    assert!(html.contains("<td>clock</td>"), "{html}");

    let (status, headers, _) = send(
        &app,
        "POST",
        "/actions/schedules/tick/trigger",
        Some("back=%2Fschedules"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = location(&headers).to_string();
    assert!(to.starts_with("/schedules?notice=triggered."), "{to}");
    let after = page(&app, &to).await;
    assert!(after.contains("Fired now: task"), "{after}");
    let part = backend.schedules().expect("the part");
    let task = part
        .schedule("tick")
        .await
        .expect("read")
        .expect("kept")
        .last_task;
    let task = task.expect("the fire's task");
    assert!(
        after.contains(&format!("href=\"/tasks/{}\"", task.0)),
        "{after}"
    );
    assert!(after.contains("state available"), "its outcome: {after}");

    let (_, headers, _) = send(
        &app,
        "POST",
        "/actions/schedules/tick/pause",
        Some("back=%2Fschedules"),
        &[],
    )
    .await;
    let paused = page(&app, location(&headers)).await;
    assert!(paused.contains("Schedule paused."), "{paused}");
    assert!(
        paused.contains("/actions/schedules/tick/resume"),
        "{paused}"
    );
    assert!(
        part.schedule("tick")
            .await
            .expect("read")
            .expect("kept")
            .paused
    );
    let (status, _, _) = send(&app, "POST", "/actions/schedules/none/pause", Some(""), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let read_only = conveyor_serve::router(backend.clone(), ServeOptions::new().read_only(true));
    let html = page(&read_only, "/schedules").await;
    assert!(html.contains("id=\"schedule-tick\""));
    assert!(!html.contains("/actions/schedules/"), "no button: {html}");
}
