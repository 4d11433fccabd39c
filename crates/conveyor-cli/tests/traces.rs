//! OpenTelemetry traces across processes (feature `otel`): `conveyor
//! submit --otlp URL` exports its enqueue spans, `conveyor worker --otlp
//! URL` its attempt spans, to a small OTLP/HTTP receiver inside the test
//! that decodes the protobuf bodies. Each attempt links to the span of the
//! enqueue that made its task, in the other process; the worker's JSON log
//! lines of a task carry its id and its attempt's trace id.

#![cfg(feature = "otel")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use conveyor::TaskState;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const CONFIG: &str = "[worker]\nslots = 2\npoll = \"20ms\"\n\
    [handlers.ok]\nprogram = \"echo\"\nargs = [\"{}\"]\n\
    [handlers.bad]\nprogram = \"sh\"\nargs = [\"-c\", \"exit 3\"]\n\
    retries = 1\nbackoff = \"10ms\"\n";

/// Every span the receiver was sent.
type Received = Arc<Mutex<Vec<Span>>>;

/// Answers OTLP/HTTP exports on a loopback port; returns its base URL.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let spans: Received = Arc::default();
    let keep = spans.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let keep = keep.clone();
            std::thread::spawn(move || serve(conn, keep));
        }
    });
    (url, spans)
}

/// One connection: requests until it closes.
fn serve(conn: std::net::TcpStream, spans: Received) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(
            line.starts_with("POST /v1/traces "),
            "unexpected request: {line}"
        );
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("a header");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("name: value");
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
            if name.eq_ignore_ascii_case("content-type") {
                assert_eq!(value.trim(), "application/x-protobuf");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the body");
        let request = ExportTraceServiceRequest::decode(&body[..]).expect("OTLP protobuf");
        let mut got = spans.lock().expect("spans");
        for rs in request.resource_spans {
            for ss in rs.scope_spans {
                got.extend(ss.spans);
            }
        }
        drop(got);
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn text(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Any::StringValue(s)) => Some(s.clone()),
            Some(Any::IntValue(n)) => Some(n.to_string()),
            _ => None,
        })
}

/// Waits until the receiver holds `n` spans of `kind` (the exporters flush
/// when their processes exit, so they are there or on their way).
fn wait_spans(spans: &Received, kind: SpanKind, n: usize) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<Span> = spans
            .lock()
            .expect("spans")
            .iter()
            .filter(|s| s.kind == kind as i32)
            .cloned()
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_in_the_worker_link_to_enqueues_in_submit() {
    let (url, spans) = receiver();
    let env = Env::new();
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    for (handler, params) in [("ok", "\"hi\""), ("bad", "null")] {
        let out = env.run(&["--otlp", &url, "submit", handler, params]);
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let sends = wait_spans(&spans, SpanKind::Producer, 2);
    assert_eq!(sends.len(), 2, "one enqueue span per submit");

    let settled = [(TaskState::Completed, 1), (TaskState::Dead, 1)];
    let log = common::json_log_worker(
        &env,
        &["--otlp", &url],
        &cfg,
        "info,conveyor=debug",
        &settled,
    )
    .await;

    let attempts = wait_spans(&spans, SpanKind::Consumer, 3);
    assert_eq!(attempts.len(), 3, "ok ran once, bad twice");
    for send in &sends {
        assert_eq!(send.name, "send default");
        assert_eq!(text(send, "messaging.system").as_deref(), Some("conveyor"));
        assert_eq!(
            text(send, "messaging.operation.type").as_deref(),
            Some("send")
        );
        let id = text(send, "messaging.message.id").expect("the task id");
        let runs: Vec<&Span> = attempts
            .iter()
            .filter(|a| text(a, "messaging.message.id").as_deref() == Some(&id))
            .collect();
        let handler = text(runs[0], "conveyor.task.handler").expect("a handler");
        assert_eq!(
            runs.len(),
            if handler == "bad" { 2 } else { 1 },
            "{handler}"
        );
        for run in runs {
            assert_eq!(run.name, "process default");
            assert_eq!(run.links.len(), 1, "linked to its enqueue");
            assert_eq!(run.links[0].trace_id, send.trace_id);
            assert_eq!(run.links[0].span_id, send.span_id);
            assert_ne!(run.trace_id, send.trace_id, "a link, not a parent");
            let failed = run.status.as_ref().is_some_and(|s| s.code == 2);
            assert_eq!(failed, handler == "bad", "error status for {handler}");
        }
    }

    // The log joins up: lines of a task carry its id and the trace id of
    // its attempt, both those inside the attempt (the `task` span) and the
    // line that reports its outcome.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let trace_of = |id: &str, attempt: i64| -> String {
        let run = attempts
            .iter()
            .find(|a| {
                text(a, "messaging.message.id").as_deref() == Some(id)
                    && text(a, "conveyor.task.attempt") == Some(attempt.to_string())
            })
            .unwrap_or_else(|| panic!("no span of task {id} attempt {attempt}"));
        hex(&run.trace_id)
    };
    let mut inside = 0;
    for l in &lines {
        if l["span"]["name"] == "task" {
            inside += 1;
            let id = l["span"]["id"].as_u64().expect("a task id").to_string();
            let attempt = l["span"]["attempt"].as_i64().expect("an attempt");
            assert_eq!(
                l["span"]["trace_id"].as_str(),
                Some(trace_of(&id, attempt).as_str()),
                "{l}"
            );
        }
        if let Some(m) = l["message"].as_str().filter(|m| m.starts_with("task ")) {
            let id = l["id"].as_u64().expect("a task id").to_string();
            let attempt = l["attempt"].as_i64().expect("an attempt");
            assert_eq!(
                l["trace_id"].as_str(),
                Some(trace_of(&id, attempt).as_str()),
                "{m}: {l}"
            );
        }
    }
    assert!(inside > 0, "some lines come from inside an attempt: {log}");
    let outcomes = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("task "))
        })
        .count();
    assert_eq!(outcomes, 3, "one outcome line per attempt: {log}");
}
