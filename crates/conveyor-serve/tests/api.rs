//! The JSON API against a real backend and a real worker: enqueue, read,
//! list with paging, wait (woken by the finish, or timed out), cancel, dead
//! letters requeued and purged, stats, workers; bad input gets 400 with a
//! message, an unknown task 404.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{app, call, get, post};
use conveyor::durable::{Worker, WorkerBuilder};
use conveyor::{Handler, RetryPolicy, TaskError};
use conveyor_serve::ServeOptions;
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

#[tokio::test]
async fn enqueue_read_list_and_cancel() {
    let (app, _) = app(ServeOptions::new());
    let (status, one) = post(
        &app,
        "/api/v1/tasks",
        json!({"handler": "send", "params": {"to": "a@b"}, "queue": "mail", "priority": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{one}");
    let (status, task) = get(&app, &format!("/api/v1/tasks/{}", id(&one))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(task["params"], json!({"to": "a@b"}));
    assert_eq!(
        (&task["queue"], &task["state"], &task["priority"]),
        (&json!("mail"), &json!("available"), &json!(5))
    );

    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"handler": "send", "params": i, "queue": "mail"}))
        .collect();
    let (status, many) = post(&app, "/api/v1/tasks/batch", json!({ "tasks": batch })).await;
    assert_eq!(status, StatusCode::CREATED, "{many}");
    assert_eq!(many["tasks"].as_array().map(Vec::len), Some(5));

    // Two pages of three, by key.
    let (_, page) = get(&app, "/api/v1/tasks?state=available&queue=mail&limit=3").await;
    let first: Vec<&str> = page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(first.len(), 3);
    let after = page["next_after"].as_str().expect("a next page");
    let (_, page2) = get(
        &app,
        &format!("/api/v1/tasks?state=available&queue=mail&limit=3&after={after}"),
    )
    .await;
    let second: Vec<&str> = page2["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(second.len(), 3, "six tasks wait in mail");
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "pages do not overlap"
    );
    // A full page always offers a next one; past the end it is empty.
    let after = page2["next_after"]
        .as_str()
        .expect("a full page has a next");
    let (_, page3) = get(
        &app,
        &format!("/api/v1/tasks?state=available&queue=mail&limit=3&after={after}"),
    )
    .await;
    assert_eq!(page3["tasks"].as_array().map(Vec::len), Some(0));
    assert!(page3["next_after"].is_null());
    let (_, newest) = get(&app, "/api/v1/tasks?order=newest&limit=1").await;
    assert_eq!(newest["tasks"][0]["params"], json!(4));

    // A search finds text in params, ignoring ASCII case, and is counted.
    let (status, found) = get(
        &app,
        "/api/v1/tasks?state=available&search=%22TO%22%3A%22A%40B",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["tasks"].as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found["tasks"][0]["id"], json!(id(&one)));
    assert!(found["next_after"].is_null());
    let (_, counted) = get(&app, "/api/v1/tasks/count?state=available&search=a%40b").await;
    assert_eq!(counted, json!({"count": 1, "exact": true}));
    let (_, counted) = get(&app, "/api/v1/tasks/count?queue=mail").await;
    assert_eq!(counted, json!({"count": 6, "exact": true}));
    let (_, counted) = get(&app, "/api/v1/tasks/count?state=dead&handler=send").await;
    assert_eq!(counted, json!({"count": 0, "exact": true}));

    let (status, cancelled) = call(
        &app,
        "POST",
        &format!("/api/v1/tasks/{}/cancel", id(&one)),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let (_, waited) = get(&app, &format!("/api/v1/tasks/{}/wait", id(&one))).await;
    assert_eq!(waited["finished"], true, "a cancelled task has finished");

    let (_, stats) = get(&app, "/api/v1/stats").await;
    let mail = &stats["queues"][0];
    assert_eq!(
        (
            &mail["queue"],
            &mail["counts"]["available"],
            &mail["counts"]["cancelled"]
        ),
        (&json!("mail"), &json!(5), &json!(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_is_woken_by_the_finish_and_dead_letters_are_steered() {
    let (app, backend) = app(ServeOptions::new());
    let (_, slow) = post(
        &app,
        "/api/v1/tasks",
        json!({"handler": "double", "params": 21}),
    )
    .await;
    // Nothing runs it yet: a short wait times out with the task unfinished.
    let (status, early) = get(
        &app,
        &format!("/api/v1/tasks/{}/wait?timeout_ms=50", id(&slow)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&early["finished"], &early["task"]["state"]),
        (&json!(false), &json!("available"))
    );

    let double = Handler::io(
        "double",
        |n: i64, _ctx| async move { Ok::<_, TaskError>(n * 2) },
    );
    let fails = Handler::io("fails", |_: Value, _ctx| async move {
        Err::<Value, _>(TaskError::new("no such mailbox"))
    })
    .retry(RetryPolicy::attempts(1));
    let worker = Worker::builder(backend.clone())
        .handler(double)
        .handler(fails)
        .poll_interval(Duration::from_millis(10))
        .build()
        .expect("worker");
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));

    let (_, done) = get(
        &app,
        &format!("/api/v1/tasks/{}/wait?timeout_ms=20000", id(&slow)),
    )
    .await;
    assert_eq!(done["finished"], true, "{done}");
    assert_eq!(
        (&done["task"]["state"], &done["task"]["result"]),
        (&json!("completed"), &json!(42))
    );

    let (_, bad) = post(&app, "/api/v1/tasks", json!({"handler": "fails"})).await;
    let (_, dead) = get(
        &app,
        &format!("/api/v1/tasks/{}/wait?timeout_ms=20000", id(&bad)),
    )
    .await;
    assert_eq!(dead["task"]["state"], "dead", "{dead}");
    assert_eq!(dead["task"]["error"], "no such mailbox");
    let (_, listed) = get(&app, "/api/v1/tasks?state=dead").await;
    assert_eq!(listed["tasks"][0]["id"], json!(id(&bad)));
    stopper.stop();
    run.await.expect("join").expect("worker");

    // Retry by filter: a search that holds nothing moves nothing.
    let (status, moved) = post(
        &app,
        "/api/v1/dead/requeue_matching",
        json!({"handler": "fails", "search": "no such planet"}),
    )
    .await;
    assert_eq!((status, &moved["count"]), (StatusCode::OK, &json!(0)));
    let (status, moved) = post(
        &app,
        "/api/v1/dead/requeue_matching",
        json!({"handler": "fails", "search": "NO SUCH MAILBOX"}),
    )
    .await;
    assert_eq!((status, &moved["count"]), (StatusCode::OK, &json!(1)));
    let (status, moved) = post(&app, "/api/v1/dead/requeue", json!({"ids": [id(&bad)]})).await;
    assert_eq!(
        (status, &moved["count"]),
        (StatusCode::OK, &json!(0)),
        "already requeued by the filter"
    );
    let (_, again) = get(&app, &format!("/api/v1/tasks/{}", id(&bad))).await;
    assert_eq!(
        (&again["state"], &again["attempts"]),
        (&json!("available"), &json!(0))
    );
    let (_, purged) = post(&app, "/api/v1/dead/purge", json!({})).await;
    assert_eq!(purged["count"], 0, "nothing is dead any more");

    let (status, workers) = get(&app, "/api/v1/workers").await;
    assert_eq!(status, StatusCode::OK);
    let w = &workers["workers"][0];
    assert_eq!(
        (&w["stopped"], &w["alive"]),
        (&json!(true), &json!(false)),
        "{workers}"
    );
}

#[tokio::test]
async fn bad_input_gets_400_with_a_message_and_unknown_tasks_404() {
    let (app, _) = app(ServeOptions::new());
    let cases = [
        ("POST", "/api/v1/tasks", Some(json!({"handler": ""}))),
        (
            "POST",
            "/api/v1/tasks",
            Some(json!({"handler": "x", "max_attempts": 0})),
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some(json!({"handler": "x", "surprise": 1})),
        ),
        ("POST", "/api/v1/tasks", Some(json!([1, 2]))),
        ("POST", "/api/v1/tasks/batch", Some(json!({"tasks": []}))),
        ("GET", "/api/v1/tasks/abc", None),
        ("GET", "/api/v1/tasks?limit=0", None),
        ("GET", "/api/v1/tasks?state=bogus", None),
        ("GET", "/api/v1/tasks/1/wait?timeout_ms=999999999", None),
        ("POST", "/api/v1/dead/requeue", Some(json!({"ids": ["-1"]}))),
    ];
    for (method, path, body) in cases {
        let (status, answer) = call(&app, method, path, body.clone(), &[]).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {answer}"
        );
        assert!(
            answer["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    // A body without a JSON content type.
    let (status, answer) = call(&app, "POST", "/api/v1/dead/purge", None, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = get(&app, "/api/v1/tasks/12345").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "no task 12345");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let (app, _) = app(ServeOptions::new());
    let (status, doc) = get(&app, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/tasks", &["get", "post"][..]),
        ("/api/v1/tasks/batch", &["post"]),
        ("/api/v1/tasks/{id}", &["get"]),
        ("/api/v1/tasks/{id}/wait", &["get"]),
        ("/api/v1/tasks/{id}/cancel", &["post"]),
        ("/api/v1/stats", &["get"]),
        ("/api/v1/workers", &["get"]),
        ("/api/v1/queues", &["get"]),
        ("/api/v1/queues/{queue}/pause", &["post"]),
        ("/api/v1/queues/{queue}/resume", &["post"]),
        ("/api/v1/dead/requeue", &["post"]),
        ("/api/v1/dead/requeue_matching", &["post"]),
        ("/api/v1/dead/purge", &["post"]),
        ("/api/v1/tasks/count", &["get"]),
        ("/api/v1/workflows", &["get", "post"]),
        ("/api/v1/workflows/{id}", &["get"]),
        ("/api/v1/workflows/{id}/cancel", &["post"]),
        ("/api/v1/workflows/{id}/retry", &["post"]),
        ("/api/v1/schedules", &["get"]),
        ("/api/v1/schedules/{name}", &["get", "put", "delete"]),
        ("/api/v1/schedules/{name}/pause", &["post"]),
        ("/api/v1/schedules/{name}/resume", &["post"]),
        ("/api/v1/schedules/{name}/trigger", &["post"]),
    ] {
        for m in methods {
            assert!(paths[path][*m].is_object(), "{m} {path} is not documented");
        }
    }
    assert_eq!(paths.len(), 23, "a route documented but not tested here");
    // Every reference resolves: a client generated from the document (or
    // a fuzzer) cannot follow one that does not.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the schemas: {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
    assert!(doc["components"]["schemas"]["TaskView"].is_object());
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["TaskView"]["properties"]["history"].is_object(),
        "a task's history is documented"
    );
    assert!(schemas["AttemptView"].is_object());
    assert!(schemas["AttemptOutcomeName"].is_object());
    assert!(
        schemas["ExpandedView"]["properties"]["last"].is_object(),
        "what an expanded node passes on is documented"
    );
}

#[tokio::test]
async fn a_backend_without_a_part_says_so_and_still_serves_the_rest() {
    let core_only: std::sync::Arc<dyn conveyor::durable::Backend> = std::sync::Arc::new(
        conveyor_testkit::Scoped::core_only(conveyor::durable::MemoryBackend::new()),
    );
    let app = conveyor_serve::router(core_only, ServeOptions::new());
    let (status, _) = post(&app, "/api/v1/tasks", json!({"handler": "h"})).await;
    assert_eq!(status, StatusCode::CREATED, "the core enqueues");
    for path in [
        "/api/v1/stats",
        "/api/v1/tasks?state=dead",
        "/api/v1/workers",
    ] {
        let (status, answer) = get(&app, path).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|m| m.contains("memory")),
            "the message names the backend: {answer}"
        );
    }
    // A scrape still succeeds, without the series the backend cannot give.
    let (status, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().expect("the exposition");
    assert!(!text.contains("conveyor_queue_tasks{"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// `stats` names the tasks waiting for a handler no live worker of their
/// queue has (a rolling deploy), from the workers' heartbeats; the overview
/// page warns of them.
#[tokio::test]
async fn stats_name_tasks_waiting_for_a_handler_nobody_serves() {
    use conveyor::durable::WorkerInfo;
    use conveyor::Timestamp;
    let (app, backend) = app(ServeOptions::new());
    for h in ["old", "new", "new"] {
        let (status, body) = post(&app, "/api/v1/tasks", json!({"handler": h})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, stats) = get(&app, "/api/v1/stats").await;
    assert_eq!(
        stats["unserved"],
        json!([]),
        "no worker alive: nothing to say"
    );
    let mut worker = WorkerInfo::new("w1", "host", 1, Timestamp::now());
    worker.queues = vec!["default".into()];
    worker.handlers = vec!["old".into()];
    backend
        .registry()
        .expect("registry")
        .heartbeat(&worker)
        .await
        .expect("heartbeat");
    let (status, stats) = get(&app, "/api/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats["unserved"],
        json!([{"queue": "default", "handler": "new", "waiting": 2}])
    );
    let (status, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap_or_default();
    assert!(page.contains("id=\"unserved\""), "{page}");
    assert!(
        page.contains("of handler <b class=\"name\">new</b>"),
        "{page}"
    );
}

#[tokio::test]
async fn a_task_runs_at_an_absolute_time() {
    let (app, _) = app(ServeOptions::new());
    let (status, one) = post(
        &app,
        "/api/v1/tasks",
        json!({"handler": "send", "run_at": "2099-01-02T03:04:05.678+01:00"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{one}");
    let (_, task) = get(&app, &format!("/api/v1/tasks/{}", id(&one))).await;
    assert_eq!(
        (&task["state"], &task["run_at"]),
        (&json!("scheduled"), &json!("2099-01-02T02:04:05.678Z"))
    );
    // A time past runs at once.
    let (_, past) = post(
        &app,
        "/api/v1/tasks",
        json!({"handler": "send", "run_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    let (_, task) = get(&app, &format!("/api/v1/tasks/{}", id(&past))).await;
    assert_eq!(task["state"], json!("available"));
    // With a delay too: the later of the two.
    let (_, both) = post(
        &app,
        "/api/v1/tasks",
        json!({"handler": "send", "run_at": "2001-01-01T00:00:00Z", "delay_ms": 3_600_000}),
    )
    .await;
    let (_, task) = get(&app, &format!("/api/v1/tasks/{}", id(&both))).await;
    assert_eq!(task["state"], json!("scheduled"), "{task}");
    for (body, says) in [
        (json!({"handler": "send", "run_at": "tomorrow"}), "RFC 3339"),
        (
            json!({"handler": "send", "run_at": "2099-01-02T03:04:05"}),
            "offset",
        ),
    ] {
        let (status, err) = post(&app, "/api/v1/tasks", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(err.to_string().contains(says), "{body}: {err}");
    }
}

/// Runs the workflow `sent` names to its end on a real worker serving
/// `double` and `sum` (and what `more` adds), then stops the worker;
/// returns the workflow as the API reads it at its end (or after five
/// seconds).
async fn run_to_its_end(
    app: &axum::Router,
    backend: &std::sync::Arc<dyn conveyor::durable::Backend>,
    sent: &Value,
    more: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
) -> Value {
    let double = Handler::io(
        "double",
        |n: i64, _ctx| async move { Ok::<_, TaskError>(n * 2) },
    );
    let sum = Handler::io("sum", |args: (Vec<i64>,), _ctx| async move {
        Ok::<_, TaskError>(args.0.iter().sum::<i64>())
    });
    let worker = more(
        Worker::builder(backend.clone())
            .handler(double)
            .handler(sum),
    )
    .poll_interval(Duration::from_millis(10))
    .build()
    .expect("worker");
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    let path = format!("/api/v1/workflows/{}", id(sent));
    let mut w = Value::Null;
    for _ in 0..500 {
        let (status, read) = get(app, &path).await;
        assert_eq!(status, StatusCode::OK, "{read}");
        w = read;
        if w["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stopper.stop();
    run.await.expect("worker task").expect("worker");
    w
}

/// A step whose task fans out (its result asks for an expansion) reads
/// back expanded, with the nodes it added; the step after it got their
/// results.
#[tokio::test]
async fn an_expanded_step_reads_back_with_what_it_added() {
    let (app, backend) = app(ServeOptions::new());
    let (status, sent) = post(
        &app,
        "/api/v1/workflows",
        json!({"chain": [{"handler": "fan", "params": 2}, {"handler": "sum"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let fan = Handler::io("fan", |n: i64, _ctx| async move {
        let group: Vec<Value> = (1..=n)
            .map(|i| json!({"handler": "double", "params": i}))
            .collect();
        Ok::<_, TaskError>(json!({"$expand": {"group": group}}))
    });
    let w = run_to_its_end(&app, &backend, &sent, |w| w.handler(fan)).await;
    assert_eq!(w["state"], "succeeded", "{w}");
    let nodes = w["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{w}");
    assert_eq!(
        nodes[0]["expanded"],
        json!({"output": "list", "last": ["step-1/task-1", "step-1/task-2"]})
    );
    assert_eq!(nodes[1]["expanded"], Value::Null);
    let (_, task) = get(
        &app,
        &format!(
            "/api/v1/tasks/{}",
            nodes[1]["task"].as_str().expect("a task")
        ),
    )
    .await;
    assert_eq!(task["result"], json!(6), "{task}");
}

/// A chord submitted through the API runs on a real worker: its body gets
/// the header's results; the workflow reads back with every node; a bad
/// declaration gets 400 naming what is wrong, an unknown id 404, and a
/// backend without workflows 501.
#[tokio::test]
async fn a_workflow_is_submitted_read_back_and_cancelled() {
    let (app, backend) = app(ServeOptions::new());
    let (status, sent) = post(
        &app,
        "/api/v1/workflows",
        json!({"chord": {"header": [{"handler": "double", "params": 1},
                                    {"handler": "double", "params": 2}],
                         "body": {"handler": "sum"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["started"].as_array().map(Vec::len), Some(2), "{sent}");
    let w = run_to_its_end(&app, &backend, &sent, |w| w).await;
    assert_eq!(w["state"], "succeeded", "{w}");
    let body = w["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "body"))
        .expect("the body node")
        .clone();
    assert_eq!(body["after"], json!(["header-1", "header-2"]));
    let (_, task) = get(
        &app,
        &format!("/api/v1/tasks/{}", body["task"].as_str().expect("a task")),
    )
    .await;
    assert_eq!(task["result"], json!(6), "{task}");

    // Nobody runs this one: cancelled whole.
    let (_, later) = post(
        &app,
        "/api/v1/workflows",
        json!({"group": [{"handler": "double", "params": 3}]}),
    )
    .await;
    let (status, out) = post(
        &app,
        &format!("/api/v1/workflows/{}/cancel", id(&later)),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, &out["cancelled"]),
        (StatusCode::OK, &json!(1)),
        "{out}"
    );
    let (_, read) = get(&app, &format!("/api/v1/workflows/{}", id(&later))).await;
    assert_eq!(read["state"], "cancelled");

    // Listed newest first, by state, a page at a time.
    let (status, page) = get(&app, "/api/v1/workflows?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["workflows"][0]["id"], json!(id(&later)), "{page}");
    assert_eq!(page["workflows"][0]["state"], "cancelled", "{page}");
    assert_eq!(page["next_before"], json!(id(&later)), "{page}");
    let (_, rest) = get(&app, &format!("/api/v1/workflows?before={}", id(&later))).await;
    assert_eq!(rest["workflows"][0]["id"], json!(id(&sent)), "{rest}");
    assert_eq!(rest["workflows"][0]["nodes"], json!(3), "{rest}");
    assert_eq!(rest["workflows"][0]["left"], json!(0), "{rest}");
    assert!(rest["next_before"].is_null(), "{rest}");
    let (_, succeeded) = get(&app, "/api/v1/workflows?state=succeeded").await;
    assert_eq!(succeeded["workflows"].as_array().map(Vec::len), Some(1));
    for bad in ["?state=done", "?limit=0", "?before=x", "?other=1"] {
        let (status, _) = get(&app, &format!("/api/v1/workflows{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }

    for (bad, says) in [
        (
            json!({"chain": [{"handler": "a", "retries": 2}]}),
            "retries",
        ),
        (
            json!({"nodes": [{"name": "a", "handler": "a", "after": ["b"]}]}),
            "b",
        ),
        (json!({"group": [], "chain": []}), "exactly one"),
    ] {
        let (status, answer) = post(&app, "/api/v1/workflows", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["error"].as_str().is_some_and(|m| m.contains(says)),
            "{answer}"
        );
    }
    let (status, _) = get(&app, "/api/v1/workflows/987654").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post(&app, "/api/v1/workflows/987654/cancel", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The cancelled one retried runs again (nobody runs it here: a second
    // retry finds it running); the succeeded one has nothing to retry.
    let retry = |w: &Value| format!("/api/v1/workflows/{}/retry", id(w));
    let (status, out) = post(&app, &retry(&later), json!({})).await;
    assert_eq!(
        (status, &out["retried"]),
        (StatusCode::OK, &json!(1)),
        "{out}"
    );
    let (_, read) = get(&app, &format!("/api/v1/workflows/{}", id(&later))).await;
    assert_eq!(read["state"], "running", "{read}");
    let (status, out) = post(&app, &retry(&later), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    let (status, out) = post(&app, &retry(&sent), json!({})).await;
    assert_eq!(
        (status, &out["retried"]),
        (StatusCode::OK, &json!(0)),
        "{out}"
    );
    let (status, _) = post(&app, "/api/v1/workflows/987654/retry", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&app, "/api/v1/workflows/x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let core_only: std::sync::Arc<dyn conveyor::durable::Backend> = std::sync::Arc::new(
        conveyor_testkit::Scoped::core_only(conveyor::durable::MemoryBackend::new()),
    );
    let bare = conveyor_serve::router(core_only, ServeOptions::new());
    let (status, answer) = post(
        &bare,
        "/api/v1/workflows",
        json!({"group": [{"handler": "h"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{answer}");
}
