//! What keeps one client from holding the server, tried over real sockets
//! against [`conveyor_serve::serve`]: a client that never finishes its
//! headers is cut off, one that never finishes its body gets 408,
//! connections past the cap are refused while the server goes on serving,
//! and a stopping server ends its live streams and stops. In process: the
//! body limit (413 naming it; a 10,000-task batch of 1 KiB params fits the
//! default), names over 200 characters or with control characters refused,
//! and unknown routes and methods answered with a body.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{app, call, get, post};
use conveyor::durable::{Backend, MemoryBackend};
use conveyor_serve::ServeOptions;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Bounds a wait that would otherwise hang a broken test; never the
/// promise under test.
const HANG: Duration = Duration::from_secs(30);

/// A server on a free loopback port; its address, a sender that stops it,
/// and its task.
async fn start(
    options: ServeOptions,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(conveyor_serve::serve(listener, backend, options, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {HANG:?}"))
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    // A reset is a close too.
    let _ = within("the server closing", stream.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// One whole request on a fresh connection; the answer's text.
async fn request(addr: &str, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("send");
    read_to_close(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let options = ServeOptions::new().header_timeout(Duration::from_millis(300));
    let (addr, _stop, _server) = start(options).await;
    // Half a request, and a connection that says nothing at all.
    let mut half = TcpStream::connect(&addr).await.expect("connect");
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("send");
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let answer = read_to_close(&mut half).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    read_to_close(&mut silent).await;
    // A client that sends its request whole is served.
    let ok = request(
        &addr,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_gets_408() {
    let options = ServeOptions::new().request_timeout(Duration::from_millis(300));
    let (addr, _stop, _server) = start(options).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\nConnection: close\r\n\r\n{\"handler\":",
    )
    .await
    .expect("send");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--request-timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_and_the_server_still_serves() {
    let options = ServeOptions::new()
        .max_connections(3)
        // Long enough that none of the three is cut off before the fourth
        // is taken, on a loaded machine too.
        .header_timeout(Duration::from_secs(3));
    let (addr, _stop, _server) = start(options).await;
    // Three slow clients hold every slot (the server takes connections in
    // order, so they are in before the next one).
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /health HTTP/1.1\r\n")
            .await
            .expect("send");
        slow.push(s);
    }
    // The next is told why, and closed, without waiting on anyone.
    let mut extra = TcpStream::connect(&addr).await.expect("connect");
    let refused = read_to_close(&mut extra).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too many connections"), "{refused}");
    // Once the slow ones are cut off, a normal client is served.
    for mut s in slow {
        read_to_close(&mut s).await;
    }
    let ok = request(
        &addr,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_ends_live_streams_and_long_polls() {
    // A grace longer than the test's bound: the server must not need it.
    let options = ServeOptions::new().shutdown_grace(Duration::from_secs(600));
    let (addr, stop, server) = start(options).await;
    let mut live = TcpStream::connect(&addr).await.expect("connect");
    live.write_all(b"GET /live/overview HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut head = [0u8; 512];
    let n = within("the stream's head", live.read(&mut head))
        .await
        .expect("read");
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.contains("text/event-stream"), "{head}");
    let poll_task = {
        // A long poll on a task that will not finish.
        let id = {
            let body = r#"{"handler":"h"}"#;
            let answer = request(
                &addr,
                &format!(
                    "POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
            )
            .await;
            let json = answer.split("\r\n\r\n").nth(1).expect("a body");
            serde_json::from_str::<Value>(json).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string()
        };
        let mut poll = TcpStream::connect(&addr).await.expect("connect");
        poll.write_all(
            format!(
                "GET /api/v1/tasks/{id}/wait?timeout_ms=20000 HTTP/1.1\r\nHost: x\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("send");
        poll
    };
    stop.send(()).expect("the server listens for its stop");
    let stopped = within("the server stopping", server).await;
    stopped.expect("no panic").expect("served");
    read_to_close(&mut live).await;
    // The poll either ran (and was answered at once with the task as it
    // is) or had not been read yet (and its connection was closed): the
    // server stopped in both cases, long before its grace.
    let mut poll = poll_task;
    let answer = read_to_close(&mut poll).await;
    if !answer.is_empty() {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"finished\":false"), "{answer}");
    }
}

fn error(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_body_limit_fits_10000_tasks_of_1_kib_and_a_larger_body_gets_413() {
    let (server, backend) = app(ServeOptions::new());
    let params = "p".repeat(1024);
    let tasks: Vec<Value> = (0..10_000)
        .map(|i| json!({"handler": "send_email", "queue": "mail", "params": {"n": i, "text": params}}))
        .collect();
    let batch = json!({ "tasks": tasks });
    assert!(batch.to_string().len() > 10_000 * 1024, "over 10 MB");
    let (status, answer) = post(&server, "/api/v1/tasks/batch", batch).await;
    assert_eq!(status, StatusCode::CREATED, "{}", error(&answer));
    assert_eq!(answer["tasks"].as_array().map(Vec::len), Some(10_000));
    let stats = backend.stats().await.expect("stats");
    assert_eq!(stats[0].count(conveyor::TaskState::Available), 10_000);

    // Past the limit: 413, and the message names it.
    let (small, _) = app(ServeOptions::new().max_body(64 * 1024));
    let big = json!({"handler": "h", "params": "x".repeat(100 * 1024)});
    let (status, answer) = post(&small, "/api/v1/tasks", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(error(&answer).contains("65536 bytes"), "{answer}");
    assert!(error(&answer).contains("--max-body"), "{answer}");
}

#[tokio::test]
async fn names_longer_than_200_characters_or_with_control_characters_are_refused() {
    let (app, backend) = app(ServeOptions::new());
    let long = "h".repeat(201);
    for (body, says) in [
        (
            json!({"handler": long}),
            "handler has 201 characters; at most 200",
        ),
        (
            json!({"handler": "h", "queue": long}),
            "queue has 201 characters; at most 200",
        ),
        (
            json!({"handler": "a\nb"}),
            "handler holds a control character",
        ),
        (
            json!({"handler": "h", "queue": "q\u{0}"}),
            "queue holds a control character",
        ),
        (json!({"handler": "x".repeat(1_000_000)}), "at most 200"),
    ] {
        let (status, answer) = post(&app, "/api/v1/tasks", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(error(&answer).contains(says), "{answer}");
        let (status, _) = post(
            &app,
            "/api/v1/tasks/batch",
            json!({"tasks": [{"handler": "ok"}, {"handler": long}]}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, answer) = post(&app, &format!("/api/v1/queues/{long}/pause"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        backend.stats().await.expect("stats").is_empty(),
        "nothing stored"
    );
    // 200 characters, of any script, are fine.
    let (status, answer) = post(&app, "/api/v1/tasks", json!({"handler": "é".repeat(200)})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_a_body_that_says_so() {
    let (app, _) = app(ServeOptions::new());
    let (status, answer) = get(&app, "/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        error(&answer).contains("no route GET /api/v1/nothing"),
        "{answer}"
    );
    let (status, answer) = get(&app, "/api/v1/tasks/batch").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error(&answer).contains("GET is not allowed"), "{answer}");
    let (status, answer) = call(&app, "DELETE", "/metrics", None, &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error(&answer).contains("DELETE is not allowed"), "{answer}");
    // A person gets a page.
    let (status, page) = get(&app, "/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let page = page.as_str().expect("html");
    assert!(
        page.contains("<html") && page.contains("no route GET /nothing/here"),
        "{page}"
    );
    let (status, page) = call(&app, "DELETE", "/tasks", None, &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        page.as_str()
            .expect("html")
            .contains("DELETE is not allowed"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_over_the_backends_value_limit_get_413_naming_both_sizes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = conveyor::durable::EmbeddedBackend::open(dir.path().join("q.db"))
        .expect("open")
        .with_max_value(1024);
    let backend: Arc<dyn Backend> = Arc::new(store);
    let server = conveyor_serve::router(backend.clone(), ServeOptions::new());
    // JSON params of 1,502 bytes: the text and its quotes.
    let big = json!({"handler": "h", "params": "x".repeat(1500)});
    let (status, answer) = post(&server, "/api/v1/tasks", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let text = error(&answer);
    assert!(
        text.contains("1502 bytes") && text.contains("at most 1024 bytes"),
        "{text}"
    );
    let stats = backend.stats().await.expect("stats");
    assert!(stats.is_empty(), "nothing enqueued: {stats:?}");
}
