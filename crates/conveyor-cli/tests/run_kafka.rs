//! `conveyor kafka produce` and `conveyor run --from kafka://…` against a real
//! Kafka-compatible broker (tansu, started by this test binary): every record
//! runs, per-key order holds, a failing record goes to the dead-letter topic
//! after its retries, and a second run of the same group starts after what the
//! first one committed.
#![cfg(feature = "kafka")]

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use conveyor_testkit::kafka_broker::brokers;
use conveyor_testkit::process::Proc;

fn conveyor(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_conveyor"));
    c.current_dir(dir).env("CONVEYOR_LOG", "warn");
    c
}

fn produce(dir: &std::path::Path, topic: &str, count: u64) {
    let out = conveyor(dir)
        .args(["kafka", "produce", "--brokers", brokers(), "--topic", topic])
        .args([
            "--count",
            &count.to_string(),
            "--keys",
            "6",
            "--partitions",
            "3",
        ])
        .output()
        .expect("run conveyor kafka produce");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Collects `done SEQ` lines until `n` arrived.
fn wait_done(p: &Proc, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut done = Vec::new();
    while done.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = p
            .next_line(left)
            .unwrap_or_else(|| panic!("only {} of {n} records done: {done:?}", done.len()));
        if let Some(seq) = line.strip_prefix("done ") {
            done.push(seq.trim().parse().expect("a sequence number"));
        }
    }
    done
}

#[test]
fn run_from_kafka_processes_every_record_in_key_order_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = format!("run-{}", std::process::id());
    produce(dir.path(), &topic, 60);
    let url = format!(
        "kafka://{}/{topic}?group=g-{topic}&start=earliest",
        brokers()
    );
    // Appends "seq key" per attempt; seq 13 always fails.
    let script = r#"echo "$1 $2" >> out; [ "$1" != 13 ] && echo "done $1""#;
    let run = |d: &std::path::Path| {
        let mut c = conveyor(d);
        c.args(["run", "--from", &url, "--json", "-j", "4", "--retries", "1"])
            .args(["--retry-delay", "10ms", "--", "sh", "-c", script, "_"])
            .args(["{.seq}", "{.key}"]);
        Proc::spawn(c).expect("spawn conveyor run")
    };
    let mut first = run(dir.path());
    let mut done = wait_done(&first, 59);
    done.sort_unstable();
    let expected: Vec<u64> = (0..60).filter(|s| *s != 13).collect();
    assert_eq!(done, expected);
    // Per key, attempts ran in offset order (the producer sends each key's records in seq order).
    let out = std::fs::read_to_string(dir.path().join("out")).expect("out");
    let mut last: HashMap<String, u64> = HashMap::new();
    for line in out.lines() {
        let (seq, key) = line.split_once(' ').expect("seq key");
        let seq: u64 = seq.parse().expect("seq");
        if let Some(prev) = last.insert(key.to_string(), seq) {
            assert!(prev <= seq, "key {key}: {seq} ran after {prev}");
        }
    }
    assert_eq!(
        out.lines().filter(|l| l.starts_with("13 ")).count(),
        2,
        "1 + 1 retry"
    );
    first.signal(libc::SIGTERM);
    let status = first
        .wait_exit(Duration::from_secs(60))
        .expect("stops on SIGTERM");
    assert_eq!(status.code(), Some(143));

    // The same group again: only the new records run.
    produce(dir.path(), &topic, 70); // seq 0..70 again, as new offsets
    let mut second = run(dir.path());
    let mut done = wait_done(&second, 69);
    done.sort_unstable();
    let expected: Vec<u64> = (0..70).filter(|s| *s != 13).collect();
    assert_eq!(done, expected, "each new record once, no old one");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        second.drain_lines().iter().all(|l| !l.starts_with("done ")),
        "records committed by the first run ran again"
    );
    second.signal(libc::SIGINT);
    let status = second
        .wait_exit(Duration::from_secs(60))
        .expect("stops on SIGINT");
    assert_eq!(status.code(), Some(130));
}

#[test]
fn run_from_refuses_options_that_do_not_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = conveyor(dir.path())
        .args([
            "run",
            "--from",
            "kafka://127.0.0.1:1/t?group=g",
            "--state",
            "s.db",
            "--",
            "true",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not take --state"), "{err}");
    let out = conveyor(dir.path())
        .args(["run", "--from", "kafka://127.0.0.1:1/t", "--", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("group"));
    let out = conveyor(dir.path())
        .args(["run", "--from", "sqs://q", "--", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown source"));
}
