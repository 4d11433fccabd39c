//! Who may do what: a token for every request but `/health`, read-only mode
//! refusing every action, actions refused to a browser on another site, no
//! listen address but loopback without a token, no token shorter than 16
//! characters, the bearer scheme in the OpenAPI document, logging out, and
//! notices only from the server's own codes.

mod common;

use std::net::SocketAddr;

use axum::http::StatusCode;
use common::{app, call};
use conveyor_serve::{check_listen, ServeOptions};
use serde_json::json;

const ENQUEUE: &str = "/api/v1/tasks";

#[tokio::test]
async fn with_a_token_every_request_but_health_needs_it() {
    let (app, _) = app(ServeOptions::new().token("s3cret"));
    for path in [
        "/api/v1/stats",
        "/openapi.json",
        "/metrics",
        "/api/v1/tasks/1",
    ] {
        let (status, body) = call(&app, "GET", path, None, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        let (status, _) = call(
            &app,
            "GET",
            path,
            None,
            &[("authorization", "Bearer wrong")],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let auth = [("authorization", "Bearer s3cret")];
    let (status, _) = call(&app, "GET", "/api/v1/stats", None, &auth).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, "POST", ENQUEUE, Some(json!({"handler": "h"})), &auth).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(&app, "POST", ENQUEUE, Some(json!({"handler": "h"})), &[]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no action without it either"
    );
    let (status, _) = call(&app, "GET", "/health", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn read_only_refuses_every_action_and_serves_reads() {
    let (app, backend) = app(ServeOptions::new().read_only(true));
    let id = backend
        .enqueue(conveyor::durable::NewTask::new("h", b"null".to_vec()))
        .await
        .expect("enqueue")
        .id
        .0;
    let actions = [
        (ENQUEUE.to_string(), Some(json!({"handler": "h"}))),
        (
            "/api/v1/tasks/batch".to_string(),
            Some(json!({"tasks": [{"handler": "h"}]})),
        ),
        (format!("/api/v1/tasks/{id}/cancel"), None),
        (
            "/api/v1/dead/requeue".to_string(),
            Some(json!({"ids": [id.to_string()]})),
        ),
        ("/api/v1/dead/purge".to_string(), Some(json!({}))),
    ];
    for (path, body) in actions {
        let (status, answer) = call(&app, "POST", &path, body, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert!(answer["error"]
            .as_str()
            .is_some_and(|m| m.contains("read-only")));
    }
    let (status, task) = call(&app, "GET", &format!("/api/v1/tasks/{id}"), None, &[]).await;
    assert_eq!(
        (status, &task["state"]),
        (StatusCode::OK, &json!("available")),
        "untouched"
    );
}

#[tokio::test]
async fn a_browser_on_another_site_cannot_act() {
    let (app, backend) = app(ServeOptions::new());
    let body = Some(json!({"handler": "h"}));
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080"),
        ],
    ] {
        let (status, answer) = call(&app, "POST", ENQUEUE, body.clone(), headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {answer}");
    }
    let stats = backend.stats().await.expect("stats");
    assert!(
        stats.iter().all(|q| q.counts.values().sum::<u64>() == 0),
        "nothing enqueued"
    );
    // The dashboard's own page, and programs, may.
    for headers in [
        &[("sec-fetch-site", "same-origin")][..],
        &[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ],
        &[],
    ] {
        let (status, _) = call(&app, "POST", ENQUEUE, body.clone(), headers).await;
        assert_eq!(status, StatusCode::CREATED, "{headers:?}");
    }
    // Reading from another site is the browser's same-origin policy's job.
    let (status, _) = call(
        &app,
        "GET",
        "/api/v1/stats",
        None,
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn only_loopback_listens_without_a_token() {
    let open = ServeOptions::new();
    let with = ServeOptions::new().token("a-long-enough-token");
    for addr in ["127.0.0.1:8080", "[::1]:8080"] {
        let addr: SocketAddr = addr.parse().expect("addr");
        assert!(check_listen(addr, &open).is_ok(), "{addr}");
    }
    for addr in ["0.0.0.0:8080", "[::]:8080", "192.168.1.5:8080"] {
        let addr: SocketAddr = addr.parse().expect("addr");
        let err = check_listen(addr, &open).expect_err("needs a token");
        assert!(err.to_string().contains("without a token"), "{err}");
        assert!(check_listen(addr, &with).is_ok());
    }
    let empty = ServeOptions::new().token("");
    assert!(check_listen("0.0.0.0:1".parse().expect("addr"), &empty).is_err());
}

#[test]
fn a_token_shorter_than_16_characters_is_refused() {
    for addr in ["127.0.0.1:8080", "0.0.0.0:8080"] {
        let addr: SocketAddr = addr.parse().expect("addr");
        for short in ["t", "s3cret", "fifteen-chars!!"] {
            let err = check_listen(addr, &ServeOptions::new().token(short))
                .expect_err("a short token is refused");
            assert!(err.to_string().contains("at least 16"), "{err}");
        }
        let ok = ServeOptions::new().token("sixteen-chars!!!");
        assert!(check_listen(addr, &ok).is_ok(), "{addr}");
    }
}

#[tokio::test]
async fn with_a_token_the_openapi_document_declares_the_bearer_scheme() {
    let token = "a-long-enough-token";
    let (app, _) = app(ServeOptions::new().token(token));
    let auth = format!("Bearer {token}");
    let (status, doc) = call(
        &app,
        "GET",
        "/openapi.json",
        None,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let scheme = &doc["components"]["securitySchemes"]["token"];
    assert_eq!(scheme["type"], "http", "{doc}");
    assert_eq!(scheme["scheme"], "bearer", "{doc}");
    assert_eq!(doc["security"], json!([{"token": []}]));
    // Without a token there is nothing to declare.
    let (open, _) = app_without_token();
    let (_, doc) = call(&open, "GET", "/openapi.json", None, &[]).await;
    assert!(doc["components"]["securitySchemes"].is_null(), "{doc}");
}

fn app_without_token() -> (axum::Router, std::sync::Arc<dyn conveyor::durable::Backend>) {
    app(ServeOptions::new())
}

#[tokio::test]
async fn logging_out_clears_the_cookie_even_read_only() {
    let token = "a-long-enough-token";
    let (app, _) = app(ServeOptions::new().token(token).read_only(true));
    let (status, page) = call(
        &app,
        "GET",
        "/",
        None,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().expect("html").to_string();
    assert!(
        page.contains("action=\"/logout\""),
        "a log-out button: {page}"
    );
    let response = tower::ServiceExt::oneshot(
        app.clone(),
        axum::http::Request::post("/logout")
            .header("sec-fetch-site", "same-origin")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()["set-cookie"].to_str().expect("ascii");
    assert!(cookie.starts_with("conveyor_token=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert_eq!(response.headers()["location"], "/login");
    // From another site, no (a page elsewhere may not log a visitor out).
    let (status, _) = call(
        &app,
        "POST",
        "/logout",
        None,
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_notice_is_only_ever_one_of_the_servers_own() {
    let (app, _) = app(ServeOptions::new());
    let forged = "Your session expired. Call 555-0100 to restore access.";
    let query = serde_urlencoded::to_string([("notice", forged)]).expect("query");
    for path in ["/", "/tasks", "/workers"] {
        let (status, page) = call(&app, "GET", &format!("{path}?{query}"), None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let page = page.as_str().expect("html");
        assert!(!page.contains("555-0100"), "{path} shows a forged notice");
        assert!(!page.contains("class=\"notice\""), "{path}");
    }
    let (_, page) = call(&app, "GET", "/?notice=cancelled.42", None, &[]).await;
    assert!(
        page.as_str().expect("html").contains("Task 42 cancelled."),
        "{page}"
    );
}
