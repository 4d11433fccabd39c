//! Requests to the router in process (no socket): a method, a path, a body,
//! headers; the status and the JSON answer.

#![allow(dead_code, missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use conveyor::durable::{Backend, MemoryBackend};
use conveyor_serve::ServeOptions;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A router over a fresh in-memory backend.
pub fn app(options: ServeOptions) -> (Router, Arc<dyn Backend>) {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    (conveyor_serve::router(backend.clone(), options), backend)
}

/// Sends one request; (status, JSON body or the text as a JSON string).
pub async fn call(
    app: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = match body {
        Some(b) => request
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

pub async fn get(app: &Router, path: &str) -> (StatusCode, Value) {
    call(app, "GET", path, None, &[]).await
}

pub async fn post(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    call(app, "POST", path, Some(body), &[]).await
}

/// Sends a request; (status, headers, body as text).
pub async fn send(
    app: &Router,
    method: &str,
    path: &str,
    form: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = match form {
        Some(f) => request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(f.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

pub async fn page(app: &Router, path: &str) -> String {
    let (status, _, html) = send(app, "GET", path, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{path}: {html}");
    html
}

pub fn location(headers: &HeaderMap) -> &str {
    headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a redirect")
}
