//! What a worker logs: one line per settled task (handler, id, attempt,
//! outcome, run time, exit code), retries and dead letters with their error,
//! `RUST_LOG` honoured, `--log-format json`, and a stop summary whose counts
//! agree with the store.

mod common;

use common::Env;
use conveyor::TaskState;
use serde_json::Value;

const CONFIG: &str = "[worker]\nslots = 3\npoll = \"20ms\"\n\
    [handlers.ok]\nprogram = \"echo\"\nargs = [\"{}\"]\n\
    [handlers.bad]\nprogram = \"sh\"\nargs = [\"-c\", \"echo oops >&2; exit 3\"]\n\
    retries = 1\nbackoff = \"10ms\"\n\
    [handlers.nope]\nprogram = \"definitely-not-a-program\"\n";

/// Submits one task per handler, runs a worker with `filter` until they have
/// settled (one completed, two dead), stops it with SIGTERM and returns its
/// stderr.
async fn worker_log(filter: &str) -> String {
    let env = Env::new();
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    for (handler, params) in [("ok", "\"hi\""), ("bad", "null"), ("nope", "null")] {
        assert!(env.run(&["submit", handler, params]).status.success());
    }
    let settled = [(TaskState::Dead, 2), (TaskState::Completed, 1)];
    common::json_log_worker(&env, &[], &cfg, filter, &settled).await
}

/// The log's JSON lines.
fn lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn find<'a>(lines: &'a [Value], message: &str, handler: &str, attempt: u64) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message && l["handler"] == handler && l["attempt"] == attempt)
        .unwrap_or_else(|| {
            panic!("no {message:?} line for {handler} attempt {attempt}: {lines:#?}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_has_its_line_and_the_summary_agrees_with_the_store() {
    let log = worker_log("info").await;
    let lines = lines(&log);
    let ok = find(&lines, "task succeeded", "ok", 1);
    assert_eq!(
        (ok["outcome"].as_str(), ok["exit_code"].as_str()),
        (Some("succeeded"), Some("0"))
    );
    assert!(
        ok["run_time"].as_str().is_some_and(|t| t.ends_with('s')),
        "{ok}"
    );
    let retried = find(&lines, "task failed; it will be retried", "bad", 1);
    assert_eq!(retried["level"], "WARN");
    assert_eq!(retried["exit_code"], "3");
    assert_eq!(retried["error"], "exit code 3: oops");
    let dead = find(&lines, "task dead-lettered", "bad", 2);
    assert_eq!(
        (dead["level"].as_str(), dead["error"].as_str()),
        (Some("ERROR"), Some("exit code 3: oops"))
    );
    let nope = find(&lines, "task dead-lettered", "nope", 1);
    assert!(
        nope["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot start definitely-not-a-program")),
        "{nope}"
    );
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    let stop = messages
        .iter()
        .find(|m| m.starts_with("conveyor worker: stopped"))
        .unwrap_or_else(|| panic!("no stop line: {messages:#?}"));
    assert!(
        stop.contains("1 completed, 1 retried, 2 dead, 0 discarded, 0 handed back"),
        "{stop}"
    );
    assert!(
        messages.contains(&"queue default now holds: 1 completed, 2 dead"),
        "{messages:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_is_honoured() {
    let log = worker_log("warn").await;
    let lines = lines(&log);
    assert!(lines.iter().all(|l| l["level"] != "INFO"), "{lines:#?}");
    find(&lines, "task dead-lettered", "nope", 1);
}
