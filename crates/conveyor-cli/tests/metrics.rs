//! `conveyor worker --metrics ADDR`: the exposition is read by the official
//! Prometheus client's OpenMetrics parser (Python, from the package
//! registry, in the test's own virtualenv), and its values are checked
//! against the store after a known workload.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Env;
use conveyor::TaskState;
use serde_json::Value;

const CONFIG: &str = "[worker]\nslots = 3\npoll = \"20ms\"\n\
    [handlers.ok]\nprogram = \"true\"\n\
    [handlers.bad]\nprogram = \"sh\"\nargs = [\"-c\", \"exit 3\"]\n\
    retries = 1\nbackoff = \"10ms\"\n";

/// Prints every sample as a JSON line: `{"name", "labels", "value"}`, after
/// the strict OpenMetrics parser has read the whole exposition.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type}))
"#;

/// GET `path` from `addr`: (head, body).
fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_string(), body.to_string())
}

/// The samples of `text` as the parser read them, by name and labels.
fn parse(text: &str) -> Vec<Value> {
    let python = conveyor_testkit::python::venv(
        "prometheus-client",
        &["prometheus-client>=0.20,<1"],
        &["prometheus_client"],
    )
    .expect("a Python with prometheus_client");
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON sample"))
        .collect()
}

/// The value of sample `name` with these labels (0 when absent).
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .find(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_parses_and_agrees_with_the_store() {
    let env = Env::new();
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    for _ in 0..5 {
        assert!(env.run(&["submit", "ok"]).status.success());
    }
    for _ in 0..2 {
        assert!(env.run(&["submit", "bad"]).status.success());
    }
    let (mut child, addr) = common::spawn_with_address(
        env.cmd(&[
            "worker",
            "--config",
            &cfg,
            "--metrics",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]),
        "metrics at http://",
    );

    let b = env.backend().await;
    common::wait_count(&b, TaskState::Completed, 5, Duration::from_secs(60)).await;
    common::wait_count(&b, TaskState::Dead, 2, Duration::from_secs(60)).await;

    let (head, body) = get(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let samples = parse(&body);

    let stats = b.stats().await.expect("stats");
    let store: HashMap<TaskState, u64> = TaskState::ALL
        .iter()
        .map(|s| (*s, stats.iter().map(|q| q.count(*s)).sum()))
        .collect();
    let ok = [("queue", "default"), ("handler", "ok")];
    let bad = [("queue", "default"), ("handler", "bad")];
    let completed = value(&samples, "conveyor_tasks_succeeded_total", &ok);
    let dead = value(&samples, "conveyor_tasks_dead_lettered_total", &bad);
    assert_eq!(completed as u64, store[&TaskState::Completed]);
    assert_eq!(dead as u64, store[&TaskState::Dead]);
    assert_eq!(
        (completed, dead),
        (5.0, 2.0),
        "the store holds 5 completed, 2 dead"
    );
    // Each bad task: two attempts, both failed, the first retried.
    assert_eq!(value(&samples, "conveyor_tasks_started_total", &ok), 5.0);
    assert_eq!(value(&samples, "conveyor_tasks_started_total", &bad), 4.0);
    assert_eq!(value(&samples, "conveyor_tasks_failed_total", &bad), 4.0);
    assert_eq!(value(&samples, "conveyor_tasks_retried_total", &bad), 2.0);
    assert_eq!(value(&samples, "conveyor_tasks_failed_total", &ok), 0.0);
    // A histogram observation per attempt: run time when it ends, queue
    // wait when it starts.
    assert_eq!(value(&samples, "conveyor_task_run_seconds_count", &ok), 5.0);
    assert_eq!(
        value(&samples, "conveyor_task_run_seconds_count", &bad),
        4.0
    );
    assert_eq!(
        value(&samples, "conveyor_task_queue_wait_seconds_count", &bad),
        4.0
    );
    let inf = [("queue", "default"), ("handler", "ok"), ("le", "+Inf")];
    assert_eq!(
        value(&samples, "conveyor_task_run_seconds_bucket", &inf),
        5.0
    );
    assert!(value(&samples, "conveyor_task_run_seconds_sum", &ok) > 0.0);
    // The worker's own series.
    assert_eq!(value(&samples, "conveyor_worker_slots", &[]), 3.0);
    assert_eq!(value(&samples, "conveyor_worker_in_flight", &[]), 0.0);
    assert_eq!(
        value(&samples, "conveyor_worker_tasks_reserved_total", &[]),
        9.0
    );
    assert_eq!(
        value(&samples, "conveyor_lease_renewals_lost_total", &[]),
        0.0
    );
    assert_eq!(
        value(&samples, "conveyor_settlements_stale_total", &[]),
        0.0
    );
    assert!(
        !samples
            .iter()
            .any(|s| s["name"] == "conveyor_backend_reconnects_total"),
        "a file store has no connection to lose"
    );
    let (head, _) = get(&addr, "/nothing");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("worker exit");
    assert!(status.success(), "{status}");
}

#[test]
fn a_networked_backend_exports_its_reconnects() {
    let ns = common::namespace::Namespace::redis("metrics-reconnects");
    let env = Env::with_backend(&ns.url);
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    let (mut child, addr) = common::spawn_with_address(
        env.cmd(&["worker", "--config", &cfg, "--metrics", "127.0.0.1:0"]),
        "metrics at http://",
    );
    let (_, body) = get(&addr, "/metrics");
    let samples = parse(&body);
    let reconnects = samples
        .iter()
        .find(|s| s["name"] == "conveyor_backend_reconnects_total")
        .unwrap_or_else(|| panic!("no reconnects series: {body}"));
    assert_eq!(reconnects["value"], 0.0);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("worker exit").success());
}

#[test]
fn an_address_in_use_is_refused_before_the_worker_starts() {
    let env = Env::new();
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = env.run(&["worker", "--config", &cfg, "--metrics", &addr]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!("--metrics {addr}: cannot listen there")),
        "{err}"
    );
}

#[test]
fn run_serves_metrics_only_for_a_kafka_consumer() {
    let out = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["run", "--metrics", "127.0.0.1:0", "--", "echo", "{}"])
        .stdin(Stdio::null())
        .output()
        .expect("conveyor run");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("--metrics serves a Kafka consumer's metrics"),
        "{err}"
    );
}
