//! Pausing and resuming queues through the API, with a real worker running:
//! a paused queue's tasks wait while another queue's run, resuming lets them
//! finish; `GET /api/v1/queues` lists counts and the `paused` flag; actions
//! are refused read-only and cross-site; a backend without the part answers
//! 501 with the reason.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{app, call, get, post};
use conveyor::durable::Worker;
use conveyor::{Handler, TaskError};
use conveyor_serve::ServeOptions;
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

async fn wait(app: &axum::Router, id: &str) -> Value {
    let (status, done) = get(app, &format!("/api/v1/tasks/{id}/wait?timeout_ms=20000")).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    done
}

fn queue<'a>(listed: &'a Value, name: &str) -> &'a Value {
    listed["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queue"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {listed}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_waits_while_a_worker_runs_the_others() {
    let (app, backend) = app(ServeOptions::new());
    let echo = Handler::io("echo", |n: i64, _ctx| async move { Ok::<_, TaskError>(n) });
    let worker = Worker::builder(backend.clone())
        .handler(echo)
        .queues(["held", "free"])
        .poll_interval(Duration::from_millis(10))
        .build()
        .expect("worker");
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));

    // The worker runs: a task of `held` completes before the pause.
    let (_, before) = post(
        &app,
        "/api/v1/tasks",
        json!({"handler": "echo", "params": 0, "queue": "held"}),
    )
    .await;
    assert_eq!(wait(&app, &id(&before)).await["finished"], true);

    let (status, paused) = post(&app, "/api/v1/queues/held/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(
        paused,
        json!({"queue": "held", "paused": true, "changed": true})
    );
    let (_, again) = post(&app, "/api/v1/queues/held/pause", json!({})).await;
    assert_eq!(again["changed"], false, "paused already");

    let mut held = Vec::new();
    for n in 1..=3 {
        let (status, t) = post(
            &app,
            "/api/v1/tasks",
            json!({"handler": "echo", "params": n, "queue": "held"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "enqueueing goes on: {t}");
        held.push(id(&t));
    }
    // A task of the other queue, enqueued after, runs to its end: the
    // worker has polled both queues since the held tasks were enqueued.
    let (_, free) = post(
        &app,
        "/api/v1/tasks",
        json!({"handler": "echo", "params": 9, "queue": "free"}),
    )
    .await;
    assert_eq!(wait(&app, &id(&free)).await["task"]["state"], "completed");
    for _ in 0..3 {
        // And it polls on; the held tasks stay where they are.
        let (_, free) = post(
            &app,
            "/api/v1/tasks",
            json!({"handler": "echo", "params": 9, "queue": "free"}),
        )
        .await;
        assert_eq!(wait(&app, &id(&free)).await["task"]["state"], "completed");
    }
    for t in &held {
        let (_, task) = get(&app, &format!("/api/v1/tasks/{t}")).await;
        assert_eq!(task["state"], "available", "a paused queue's task waits");
    }
    let (status, listed) = get(&app, "/api/v1/queues").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["pausing"], true);
    let h = queue(&listed, "held");
    assert_eq!(
        (&h["paused"], &h["counts"]["available"]),
        (&json!(true), &json!(3))
    );
    assert_eq!(queue(&listed, "free")["paused"], false);

    let (status, resumed) = post(&app, "/api/v1/queues/held/resume", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(
        resumed,
        json!({"queue": "held", "paused": false, "changed": true})
    );
    for t in &held {
        let done = wait(&app, t).await;
        assert_eq!(done["task"]["state"], "completed", "{done}");
    }
    let (_, again) = post(&app, "/api/v1/queues/held/resume", json!({})).await;
    assert_eq!(again["changed"], false, "not paused");
    stopper.stop();
    run.await.expect("join").expect("worker");
}

#[tokio::test]
async fn a_queue_paused_before_its_first_task_is_listed() {
    let (app, _) = app(ServeOptions::new());
    let (status, _) = post(&app, "/api/v1/queues/later/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = get(&app, "/api/v1/queues").await;
    assert_eq!(
        listed["queues"],
        json!([{"queue": "later", "counts": {}, "oldest_ready": null, "paused": true}])
    );
    // A name is taken as it is, as a task's queue is (only an empty one,
    // which a path segment cannot be, is refused by the backend).
    let (status, spaced) = post(&app, "/api/v1/queues/two%20words/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{spaced}");
    assert_eq!(spaced["queue"], "two words");
}

#[tokio::test]
async fn pausing_is_an_action_refused_read_only_and_cross_site() {
    let (app, backend) = app(ServeOptions::new().read_only(true));
    for path in ["/api/v1/queues/q/pause", "/api/v1/queues/q/resume"] {
        let (status, answer) = post(&app, path, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
    }
    assert!(
        backend.paused_queues().await.expect("paused").is_empty(),
        "nothing was paused"
    );
    let (status, _) = get(&app, "/api/v1/queues").await;
    assert_eq!(status, StatusCode::OK, "reading is allowed read-only");

    let (app, backend) = app_writable();
    let (status, answer) = call(
        &app,
        "POST",
        "/api/v1/queues/q/pause",
        Some(json!({})),
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = call(
        &app,
        "POST",
        "/api/v1/queues/q/pause",
        Some(json!({})),
        &[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(backend.paused_queues().await.expect("paused").is_empty());
}

fn app_writable() -> (axum::Router, std::sync::Arc<dyn conveyor::durable::Backend>) {
    app(ServeOptions::new())
}

#[tokio::test]
async fn a_backend_without_queue_control_answers_501() {
    let core_only: std::sync::Arc<dyn conveyor::durable::Backend> = std::sync::Arc::new(
        conveyor_testkit::Scoped::core_only(conveyor::durable::MemoryBackend::new()),
    );
    let app = conveyor_serve::router(core_only, ServeOptions::new());
    for path in ["/api/v1/queues/q/pause", "/api/v1/queues/q/resume"] {
        let (status, answer) = post(&app, path, json!({})).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{path}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("memory") && message.contains("pausing and resuming queues"),
            "the reason: {answer}"
        );
    }
}
