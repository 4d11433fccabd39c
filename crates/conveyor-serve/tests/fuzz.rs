//! Fuzz test (proptest, stable Rust) of what the HTTP API and the dashboard
//! read from a request: JSON bodies, form bodies, query strings, path
//! parameters and headers, sent through the whole router in process
//! (`tower::ServiceExt::oneshot`, no socket) over a memory backend. Every
//! request, valid, corrupted or arbitrary, gets an answer: never a panic,
//! never a 5xx (the memory backend has no failures to explain one), and
//! from the JSON API an error is the documented `{"error": …}` body.
//!
//! A CI run is a few hundred requests; `CONVEYOR_FUZZ_SECS=N` runs it for
//! N seconds instead (docs/fuzzing.md).

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use conveyor_serve::ServeOptions;
use conveyor_testkit::fuzz::{edits, fuzz, mutate, raw_bytes};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Text for a path segment or a query value: plain, odd or
/// percent-encoded bytes of any kind.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.-]{0,12}",
        (0..u64::MAX).prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        raw_bytes(16).prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect()),
        "[ -~]{0,12}".prop_map(|s| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        }),
        Just("a".repeat(300)),
    ]
}

const QUERY_KEYS: &[&str] = &[
    "state",
    "queue",
    "handler",
    "search",
    "order",
    "after",
    "limit",
    "timeout_ms",
    "notice",
    "next",
    "range",
    "window",
    "q",
    "",
];

fn query() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        segment(),
        prop::sample::select(vec![
            "available",
            "running",
            "dead",
            "completed",
            "oldest",
            "newest",
            "1000",
            "1001",
            "20000",
            "20001",
            "1.5",
            "1e3",
            "true",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(
        (prop::sample::select(QUERY_KEYS), prop::option::of(value)),
        0..5,
    )
    .prop_map(|pairs| {
        let parts: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.to_string(),
            })
            .collect();
        parts.join("&")
    })
}

/// A path the server has (or nearly has), its parameters filled in.
fn path() -> impl Strategy<Value = String> {
    let template = prop::sample::select(vec![
        "/api/v1/tasks",
        "/api/v1/tasks/batch",
        "/api/v1/tasks/count",
        "/api/v1/tasks/{}",
        "/api/v1/tasks/{}/wait",
        "/api/v1/tasks/{}/cancel",
        "/api/v1/stats",
        "/api/v1/workers",
        "/api/v1/queues",
        "/api/v1/queues/{}/pause",
        "/api/v1/queues/{}/resume",
        "/api/v1/dead/requeue",
        "/api/v1/dead/requeue_matching",
        "/api/v1/dead/purge",
        "/api/v1/nothing",
        "/",
        "/tasks",
        "/tasks/{}",
        "/workers",
        "/live/overview",
        "/live/workers",
        "/live/count",
        "/assets/{}",
        "/login",
        "/logout",
        "/actions/tasks/{}/cancel",
        "/actions/tasks/{}/retry",
        "/actions/dead/retry",
        "/actions/dead/purge",
        "/actions/queues/{}/pause",
        "/actions/queues/{}/resume",
        "/metrics",
        "/openapi.json",
        "/health",
    ]);
    (template, segment(), query()).prop_map(|(t, seg, q)| {
        // A wait on a task that exists waits up to its timeout: ids the
        // memory backend has given out are small, so a wait names none.
        let seg = if t.ends_with("/wait") {
            format!("9{seg}")
        } else {
            seg
        };
        let mut p = t.replace("{}", &seg);
        if !q.is_empty() {
            p.push('?');
            p.push_str(&q);
        }
        p
    })
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(7.0)),
        Just(json!(-1)),
        Just(json!(4_294_967_296u64)),
        "\\PC{0,12}".prop_map(Value::String),
        Just(Value::String("h".repeat(201))),
        Just(Value::String("a\u{0}b".into())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const BODY_KEYS: &[&str] = &[
    "handler",
    "params",
    "queue",
    "delay_ms",
    "run_at",
    "priority",
    "max_attempts",
    "timeout_ms",
    "unique_key",
    "ordering_key",
    "tasks",
    "ids",
    "search",
    "other",
];

/// A request body as the API documents them, fields of any type.
fn api_task() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(BODY_KEYS), json_value()), 0..6).prop_map(
        |fields| {
            let mut m = serde_json::Map::new();
            m.insert("handler".into(), json!("h"));
            for (k, v) in fields {
                m.insert(k.into(), v);
            }
            Value::Object(m)
        },
    )
}

fn api_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        api_task(),
        prop::collection::vec(api_task(), 0..4).prop_map(|t| json!({ "tasks": t })),
        prop::collection::vec(segment(), 0..4).prop_map(|ids| json!({ "ids": ids })),
        json_value(),
    ]
}

/// A body: JSON, corrupted JSON, a form, or any bytes.
fn body() -> impl Strategy<Value = (Option<&'static str>, Vec<u8>)> {
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("application/json; charset=utf-16"),
        None,
    ]);
    let bytes = prop_oneof![
        api_body().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (api_body(), edits()).prop_map(|(v, e)| mutate(serde_json::to_vec(&v).unwrap(), &e)),
        query().prop_map(String::into_bytes),
        raw_bytes(256),
        Just(Vec::new()),
    ];
    (content_type, bytes)
}

fn request() -> impl Strategy<Value = (&'static str, String, (Option<&'static str>, Vec<u8>))> {
    (
        prop::sample::select(vec!["GET", "POST", "POST", "PUT", "DELETE", "HEAD"]),
        path(),
        body(),
    )
}

/// A fresh router every so many requests, so the store stays small.
struct App {
    router: Router,
    used: usize,
}

#[test]
fn fuzz_http_api() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fresh = || {
        let _guard = rt.enter();
        common::app(ServeOptions::new()).0
    };
    let app = RefCell::new(App {
        router: fresh(),
        used: 0,
    });
    fuzz(
        "http api",
        500,
        request(),
        |(method, path, (content_type, bytes))| {
            let router = {
                let mut a = app.borrow_mut();
                a.used += 1;
                if a.used > 2_000 {
                    *a = App {
                        router: fresh(),
                        used: 0,
                    };
                }
                a.router.clone()
            };
            let mut req = Request::builder().method(method).uri(&path);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            // A path that is not a valid URI is the HTTP layer's to refuse.
            let Ok(req) = req.body(Body::from(bytes)) else {
                return Ok(());
            };
            let stream = path.starts_with("/live/overview") || path.starts_with("/live/workers");
            rt.block_on(async {
                let response = tokio::time::timeout(Duration::from_secs(30), router.oneshot(req))
                    .await
                    .map_err(|_| {
                        TestCaseError::fail(format!("{method} {path}: no answer in 30 s"))
                    })?
                    .unwrap();
                let status = response.status();
                prop_assert!(!status.is_server_error(), "{} {}: {}", method, path, status);
                if stream || method == "HEAD" {
                    return Ok(());
                }
                let body =
                    tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
                        .await
                        .map_err(|_| {
                            TestCaseError::fail(format!("{method} {path}: body not done in 30 s"))
                        })?
                        .unwrap()
                        .to_bytes();
                if path.starts_with("/api/") && status.is_client_error() {
                    let v: Value = serde_json::from_slice(&body).map_err(|_| {
                        TestCaseError::fail(format!(
                            "{method} {path}: {status} with a body that is not JSON: {}",
                            String::from_utf8_lossy(&body)
                        ))
                    })?;
                    prop_assert!(
                        v["error"].is_string(),
                        "{} {}: {} {}",
                        method,
                        path,
                        status,
                        v
                    );
                }
                Ok(())
            })
        },
    );
}

/// Found by `fuzz_http_api`: a queue name in the path that is not UTF-8
/// once decoded got axum's plain-text 400 from pause and resume, not the
/// documented `{"error": …}` body.
#[tokio::test]
async fn regression_a_bad_queue_path_gets_the_error_body() {
    let (app, _) = common::app(ServeOptions::new());
    for action in ["pause", "resume"] {
        let (status, body) = common::call(
            &app,
            "POST",
            &format!("/api/v1/queues/%80/{action}"),
            None,
            &[],
        )
        .await;
        assert_eq!(status, axum::http::StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("path")),
            "{body}"
        );
    }
}
