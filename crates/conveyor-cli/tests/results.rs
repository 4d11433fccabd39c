//! Results from the command line: `result`, `wait`, `submit --wait` and
//! `submit --lines --wait`, `cancel` and `show`, with their exit statuses
//! (0 completed, 1 dead, 3 unfinished, 4 cancelled, 5 unknown), and the
//! warning when no worker takes a due task.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{stderr, stdout, Env};
use conveyor::TaskState;
use conveyor_testkit::process::Proc;
use serde_json::Value;

const CONFIG: &str = "[worker]\nslots = 2\npoll = \"20ms\"\n\
    [handlers.ok]\nprogram = \"echo\"\nargs = [\"{}\"]\n\
    [handlers.bad]\nprogram = \"false\"\nretries = 0\n";

fn submit(env: &Env, args: &[&str]) -> u64 {
    let out = env.run(&[&["submit"], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().parse().expect("an id")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_and_wait_report_outcomes_with_their_exit_status() {
    let env = Env::new();
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    let ok = submit(&env, &["ok", "\"hello\""]);
    let bad = submit(&env, &["bad"]);
    let elsewhere = submit(&env, &["ok", "1", "--queue", "nobody-serves-this"]);
    let (ok, bad, elsewhere) = (ok.to_string(), bad.to_string(), elsewhere.to_string());
    // Before any worker ran: unfinished.
    let out = env.run(&["result", &ok]);
    assert_eq!(code(&out), Some(3), "{}", stdout(&out));
    assert_eq!(json_lines(&stdout(&out))[0]["state"], "available");
    let worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let out = env.run(&["wait", &ok, &bad, "--timeout", "60s"]);
    assert_eq!(code(&out), Some(1), "a dead task: {}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 2);
    let done = lines
        .iter()
        .find(|l| l["id"] == ok.parse::<u64>().unwrap())
        .expect("ok's line");
    assert_eq!(done["state"], "completed");
    assert_eq!(done["result"]["stdout"], "hello\n");
    let dead = lines
        .iter()
        .find(|l| l["state"] == "dead")
        .expect("bad's line");
    assert_eq!(dead["error"], "exit code 1");
    drop(worker);

    let out = env.run(&["result", &ok]);
    assert_eq!(code(&out), Some(0));
    let out = env.run(&["result", &ok, &bad, "999999"]);
    assert_eq!(code(&out), Some(5), "unknown beats dead");
    assert_eq!(json_lines(&stdout(&out))[2]["state"], "unknown");

    // A task no worker takes: the wait times out (3) and says why.
    let out = env.run(&[
        "wait",
        &elsewhere,
        "--timeout",
        "2s",
        "--warn-after",
        "200ms",
    ]);
    assert_eq!(code(&out), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("no worker has taken it") && err.contains("nobody-serves-this"),
        "{err}"
    );
    // submit --wait tells the same.
    let out = env.run(&[
        "submit",
        "ok",
        "2",
        "--queue",
        "nobody-serves-this",
        "--wait",
        "--timeout",
        "1s",
        "--warn-after",
        "100ms",
    ]);
    assert_eq!(code(&out), Some(3));
    assert!(
        stderr(&out).contains("no worker has taken it"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_lines_wait_prints_every_result_in_input_order() {
    let env = Env::new();
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let mut cmd = env.cmd(&[
        "submit",
        "ok",
        "--lines",
        "--batch",
        "2",
        "--wait",
        "--timeout",
        "60s",
    ]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("submit");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        for word in ["one", "two", "three", "four", "five"] {
            writeln!(stdin, "\"{word}\"").expect("write");
        }
    }
    let out = child.wait_with_output().expect("submit ran");
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    let said: Vec<&str> = lines
        .iter()
        .map(|l| l["result"]["stdout"].as_str().expect("stdout"))
        .collect();
    assert_eq!(said, ["one\n", "two\n", "three\n", "four\n", "five\n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_show() {
    let env = Env::new();
    let id = submit(
        &env,
        &["ok", "{\"n\": 7}", "--key", "k1", "--priority", "3"],
    )
    .to_string();
    let out = env.run(&["show", &id]);
    assert_eq!(code(&out), Some(0));
    let text = stdout(&out);
    for part in [
        "handler       ok",
        "state         available",
        "attempts      0 of 3",
        "ordering key  k1",
        "params        {\"n\":7}",
        "priority      3",
    ] {
        assert!(text.contains(part), "{part:?} in\n{text}");
    }
    let out = env.run(&["cancel", &id]);
    assert_eq!(code(&out), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out).trim(), format!("task {id}: cancelled"));
    let out = env.run(&["cancel", &id]);
    assert_eq!(code(&out), Some(0), "cancelling twice is no error");
    assert_eq!(stdout(&out).trim(), format!("task {id}: already cancelled"));
    let out = env.run(&["cancel", "424242"]);
    assert_eq!(code(&out), Some(5));
    let out = env.run(&["show", &id, "--json"]);
    let shown: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(shown["state"], "cancelled");
    assert_eq!(shown["params"]["n"], 7);
    assert!(shown["finished_at"].is_string());
    let out = env.run(&["result", &id]);
    assert_eq!(code(&out), Some(4), "cancelled");
    let out = env.run(&["show", "424242"]);
    assert_eq!(code(&out), Some(5));
    let b = env.backend().await;
    common::wait_count(&b, TaskState::Cancelled, 1, Duration::from_secs(5)).await;
}
