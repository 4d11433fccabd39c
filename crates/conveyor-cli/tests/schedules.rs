//! `conveyor schedule …` against an embedded file, and a `[schedules.NAME]`
//! table of `conveyor.toml` fired by a real worker: added, listed, paused,
//! resumed, triggered and removed from the command line, unknown names
//! exiting 5, and the listing never creating a store.

mod common;

use std::time::Duration;

use common::{stderr, stdout, Env};
use conveyor::TaskState;
use conveyor_testkit::process::Proc;
use serde_json::Value;

fn list(env: &Env) -> Vec<Value> {
    let out = env.run(&["schedule", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).expect("a JSON array")
}

#[test]
fn schedules_are_managed_from_the_command_line() {
    let env = Env::new();
    // Listing a store that does not exist creates nothing.
    let out = env.run(&["schedule", "list"]);
    assert!(!out.status.success(), "no store: {}", stdout(&out));
    assert!(!env.path("tasks.db").exists(), "a listing created nothing");
    let out = env.run(&[
        "schedule",
        "add",
        "nightly",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "Europe/Paris",
        "--handler",
        "report",
        "--params",
        r#"{"day":"yesterday"}"#,
        "--misfire",
        "once",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("next fire"), "{}", stdout(&out));
    let out = env.run(&[
        "schedule",
        "add",
        "tick",
        "--json",
        r#"{"every":"1h","handler":"tick"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = list(&env);
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["nightly", "tick"]);
    assert_eq!(rows[0]["timing"], "cron \"30 2 * * *\" in Europe/Paris");
    assert_eq!(rows[0]["declared"]["misfire"], "once");
    // Mistakes are refused with the reason.
    let out = env.run(&[
        "schedule",
        "add",
        "bad",
        "--cron",
        "61 * * * *",
        "--handler",
        "h",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cron expression"), "{}", stderr(&out));
    // Pause, resume, trigger, remove.
    assert!(env.run(&["schedule", "pause", "tick"]).status.success());
    assert_eq!(list(&env)[1]["paused"], true);
    let out = env.run(&["schedule", "resume", "tick"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(list(&env)[1]["paused"], false);
    let out = env.run(&["schedule", "trigger", "tick"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let task: u64 = stdout(&out).trim().parse().expect("a task id");
    let out = env.run(&["show", &task.to_string()]);
    assert!(stdout(&out).contains("tick"), "{}", stdout(&out));
    assert!(env.run(&["schedule", "remove", "tick"]).status.success());
    for cmd in ["remove", "pause", "resume", "trigger"] {
        let out = env.run(&["schedule", cmd, "tick"]);
        assert_eq!(out.status.code(), Some(5), "{cmd}: {}", stderr(&out));
    }
    assert_eq!(list(&env).len(), 1);
}

/// A worker whose config declares a schedule stores it and fires it: its
/// tasks run, each fire time once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_schedule_is_fired_by_the_worker() {
    let env = Env::new();
    let cfg = env.config(
        r#"
[worker]
poll = "50ms"

[handlers.echo]
program = "echo"
args = ["-n", "{msg}"]

[schedules.hello]
every = "1s"
handler = "echo"
params = { msg = "hi" }
"#,
    );
    let cfg = cfg.to_string_lossy().into_owned();
    let worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("start worker");
    let backend = env.backend().await;
    let mut done = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let params = conveyor::durable::ListParams::new(TaskState::Completed);
        done = backend
            .inspection()
            .expect("part")
            .list(&params)
            .await
            .expect("list");
        if done.len() >= 2 {
            break;
        }
    }
    drop(worker);
    assert!(done.len() >= 2, "fired and ran: {}", done.len());
    let mut keys: Vec<_> = done.iter().filter_map(|t| t.unique_key.clone()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(
        (keys.len(), n),
        (done.len(), done.len()),
        "each fire time once"
    );
    assert!(done.iter().all(|t| t.handler == "echo"));
}
