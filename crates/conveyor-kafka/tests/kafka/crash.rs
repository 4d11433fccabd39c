//! At-least-once with real processes: a consumer killed with SIGKILL mid-stream
//! loses nothing (its successor processes everything not committed), and the
//! group's committed offsets were never ahead of what had been processed.
//! Also: a rebalance between two consumer processes loses nothing.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use conveyor_testkit::process::Proc;

use crate::common;

/// (partition, offset)
type Seen = HashSet<(i32, i64)>;

fn consumer(topic: &str, group: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conveyor-kafka-test-consumer"));
    cmd.arg(format!("brokers={}", common::brokers()))
        .arg(format!("topic={topic}"))
        .arg(format!("group={group}"))
        .args(extra);
    Proc::spawn(cmd).expect("start the consumer process")
}

/// Records `processed P O K` lines into `seen`; returns true if `stop_at`
/// lines were seen in total or the process ended.
fn collect(
    p: &Proc,
    seen: &mut Seen,
    all: &mut Vec<(i32, i64)>,
    until: impl Fn(&Seen) -> bool,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if until(seen) {
            return true;
        }
        match p.next_line(Duration::from_millis(200)) {
            Some(line) => record(&line, seen, all),
            None => continue,
        }
    }
    until(seen)
}

fn record(line: &str, seen: &mut Seen, all: &mut Vec<(i32, i64)>) {
    let mut parts = line.split_whitespace();
    if parts.next() != Some("processed") {
        return;
    }
    let p = parts.next().and_then(|p| p.parse().ok());
    let o = parts.next().and_then(|o| o.parse().ok());
    if let (Some(p), Some(o)) = (p, o) {
        seen.insert((p, o));
        all.push((p, o));
    }
}

/// Every line the (dead or stopped) process wrote.
fn drain(p: &Proc, seen: &mut Seen, all: &mut Vec<(i32, i64)>) {
    while let Some(line) = p.next_line(Duration::from_secs(2)) {
        record(&line, seen, all);
    }
}

/// The offsets of every record of a topic whose partitions hold `counts`.
fn everything(counts: &[i64]) -> Seen {
    counts
        .iter()
        .enumerate()
        .flat_map(|(p, n)| (0..*n).map(move |o| (p as i32, o)))
        .collect()
}

/// Records per partition: what a full read gave.
fn per_partition(seen: &Seen, partitions: i32) -> Vec<i64> {
    (0..partitions)
        .map(|p| seen.iter().filter(|(q, _)| *q == p).count() as i64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_and_commits_never_lead() {
    const TOTAL: usize = 3000;
    const PARTITIONS: i32 = 3;
    let topic = common::topic("crash", PARTITIONS).await;
    let group = common::fresh("g");
    common::produce(&topic, &common::keyed_records(TOTAL, 60));

    // About 1,600 records/s at most: the stream lasts well over the consumer's
    // one-second commit interval.
    let mut first = consumer(&topic, &group, &["work_ms=3", "max_in_flight=5"]);
    let (mut seen1, mut all1) = (Seen::new(), Vec::new());
    let midway = collect(
        &first,
        &mut seen1,
        &mut all1,
        |s| s.len() >= 700,
        Duration::from_secs(40),
    );
    assert!(midway, "the first consumer processed only {}", seen1.len());
    // Kill only once the group has committed something, so the kill lands
    // between commits and not before the first one, however fast the machine.
    let mut committed_before = 0;
    while committed_before == 0 && seen1.len() < TOTAL * 4 / 5 {
        let next = seen1.len() + 25;
        collect(
            &first,
            &mut seen1,
            &mut all1,
            |s| s.len() >= next,
            Duration::from_secs(10),
        );
        committed_before = common::committed(&topic, &group, PARTITIONS)
            .iter()
            .flatten()
            .sum::<i64>();
    }
    first.kill9();
    drain(&first, &mut seen1, &mut all1);
    assert!(seen1.len() < TOTAL, "killed too late to test anything");

    // What the group committed before the kill must have been processed.
    let committed = common::committed(&topic, &group, PARTITIONS);
    for (p, c) in committed.iter().enumerate() {
        for o in 0..c.unwrap_or(0) {
            assert!(
                seen1.contains(&(p as i32, o)),
                "partition {p}: offset {o} committed (at {c:?}) but never processed"
            );
        }
    }
    assert!(
        committed.iter().flatten().sum::<i64>() > 0,
        "nothing committed before the kill"
    );

    let second = consumer(&topic, &group, &["work_ms=1", "max_in_flight=20"]);
    let (mut seen2, mut all2) = (Seen::new(), Vec::new());
    let all_done = collect(
        &second,
        &mut seen2,
        &mut all2,
        |s| s.union(&seen1).count() >= TOTAL,
        Duration::from_secs(40),
    );
    drop(second);
    let union: Seen = seen1.union(&seen2).copied().collect();
    assert!(
        all_done,
        "processed {} of {TOTAL} after the restart",
        union.len()
    );
    let counts = per_partition(&union, PARTITIONS);
    assert_eq!(counts.iter().sum::<i64>(), TOTAL as i64);
    assert_eq!(union, everything(&counts), "a gap in some partition");
    // Redelivery is bounded by what was uncommitted at the kill.
    let again = seen2.intersection(&seen1).count();
    assert!(again <= 20 * 50, "re-processed {again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_between_two_processes_loses_nothing() {
    const TOTAL: usize = 4000;
    const PARTITIONS: i32 = 4;
    let topic = common::topic("rebalance", PARTITIONS).await;
    let group = common::fresh("g");
    common::produce(&topic, &common::keyed_records(TOTAL, 80));

    // Slow enough (about 400 records/s each) that a is mid-stream when b joins.
    let args = ["work_ms=10", "max_in_flight=2"];
    let mut a = consumer(&topic, &group, &args);
    let (mut seen_a, mut all_a) = (Seen::new(), Vec::new());
    assert!(
        collect(
            &a,
            &mut seen_a,
            &mut all_a,
            |s| s.len() >= 300,
            Duration::from_secs(40)
        ),
        "a processed only {}",
        seen_a.len()
    );
    // b joins: the group rebalances while a is mid-stream.
    let b = consumer(&topic, &group, &args);
    let (mut seen_b, mut all_b) = (Seen::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen_b.len() < 50 && Instant::now() < deadline {
        if let Some(line) = b.next_line(Duration::from_millis(50)) {
            record(&line, &mut seen_b, &mut all_b);
        }
        while let Some(line) = a.next_line(Duration::ZERO) {
            record(&line, &mut seen_a, &mut all_a);
        }
    }
    assert!(
        seen_b.len() >= 50,
        "b got no partitions ({} processed; a processed {})",
        seen_b.len(),
        seen_a.len()
    );
    // a leaves gracefully (SIGTERM): revoke, commit, leave; b takes everything.
    a.signal(libc::SIGTERM);
    let exited = a.wait_exit(Duration::from_secs(30));
    drain(&a, &mut seen_a, &mut all_a);
    assert!(
        exited.is_some_and(|s| s.success()),
        "a did not stop cleanly: {exited:?}"
    );
    let finished = collect(
        &b,
        &mut seen_b,
        &mut all_b,
        |s| s.union(&seen_a).count() >= TOTAL,
        Duration::from_secs(40),
    );
    drop(b);
    let union: Seen = seen_a.union(&seen_b).copied().collect();
    assert!(finished, "processed {} of {TOTAL}", union.len());
    let counts = per_partition(&union, PARTITIONS);
    assert_eq!(union, everything(&counts), "a gap in some partition");
    assert_eq!(union.len(), TOTAL);
}
