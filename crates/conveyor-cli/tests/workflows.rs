//! Workflows from the command line: `conveyor workflow submit|show|cancel|retry`
//! and `conveyor submit --workflow`, run by a real worker over the
//! embedded store, with their exit statuses (0 succeeded, 1 failed, 2
//! refused, 4 cancelled, 5 unknown).

mod common;

use common::{stderr, stdout, Env};
use conveyor_testkit::process::Proc;
use serde_json::Value;

/// `echo` prints its params; `bad` fails at once, never retried.
const CONFIG: &str = "[worker]\nslots = 4\npoll = \"20ms\"\n\
    [handlers.echo]\nprogram = \"echo\"\nargs = [\"{}\"]\n\
    [handlers.bad]\nprogram = \"false\"\nretries = 0\n";

fn declare(env: &Env, name: &str, text: &str) -> String {
    let path = env.path(name);
    std::fs::write(&path, text).expect("write the declaration");
    path.to_string_lossy().into_owned()
}

/// Submits `file` and waits for its end: the workflow's id, after checking
/// the exit status is `status` (`--wait`'s: 0 succeeded, 1 failed).
fn submit_and_wait(env: &Env, file: &str, status: i32) -> (String, String) {
    let out = env.run(&["workflow", "submit", file, "--wait", "--timeout", "60s"]);
    assert_eq!(
        out.status.code(),
        Some(status),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let id = text
        .split_whitespace()
        .nth(1)
        .map(|s| s.trim_end_matches(':').to_string())
        .expect("the workflow's id");
    (id, text)
}

fn show(env: &Env, id: &str) -> Value {
    let out = env.run(&["workflow", "show", id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("one JSON object")
}

fn node<'a>(w: &'a Value, name: &str) -> &'a Value {
    w["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no node {name} in {w}"))
}

#[test]
fn a_chord_runs_through_a_worker_and_its_body_gets_every_result() {
    let env = Env::new();
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    let file = declare(
        &env,
        "chord.json",
        r#"{"chord": {"header": [{"handler": "echo", "params": ["a"]},
                                 {"handler": "echo", "params": ["b"]}],
                      "body": {"handler": "echo", "params": ["joined"]}},
            "on_success": {"handler": "echo", "params": ["done"]},
            "on_failure": {"handler": "echo", "params": ["alarm"]}}"#,
    );
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let (id, text) = submit_and_wait(&env, &file, 0);
    assert!(text.contains("succeeded"), "{text}");
    let w = show(&env, &id);
    assert_eq!(w["state"], "succeeded");
    let body = node(&w, "body");
    assert_eq!(body["state"], "succeeded");
    assert_eq!(body["attempts"], 1);
    // The body's params: the header's results (echo's records) first.
    let printed = body["result"]["stdout"].as_str().expect("stdout");
    let params: Value = serde_json::from_str(printed.trim()).expect("echoed params");
    assert_eq!(params[0][0]["stdout"], "[\"a\"]\n", "{params}");
    assert_eq!(params[0][1]["stdout"], "[\"b\"]\n", "{params}");
    assert_eq!(params[1], "joined");
    assert_eq!(node(&w, "on_success")["state"], "succeeded");
    assert_eq!(node(&w, "on_failure")["state"], "skipped");
}

#[test]
fn a_failed_step_fails_the_chain_and_skips_the_rest() {
    let env = Env::new();
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    let file = declare(
        &env,
        "chain.json",
        r#"{"chain": [{"handler": "echo"}, {"handler": "bad"}, {"handler": "echo"}]}"#,
    );
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    // `conveyor submit --workflow` is the same command.
    let out = env.run(&["submit", "--workflow", &file, "--wait", "--timeout", "60s"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("failed") && text.contains("skipped"),
        "{text}"
    );
    assert!(
        text.contains("exit code 1"),
        "the step's error is shown: {text}"
    );
}

#[test]
fn refused_unknown_and_cancelled_workflows_say_so() {
    let env = Env::new();
    let bad = declare(
        &env,
        "bad.json",
        r#"{"chain": [{"handler": "echo", "retries": 3}]}"#,
    );
    let out = env.run(&["workflow", "submit", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("retries"), "{}", stderr(&out));
    let cycle = declare(
        &env,
        "cycle.json",
        r#"{"nodes": [{"name": "a", "handler": "echo", "after": ["b"]},
                      {"name": "b", "handler": "echo", "after": ["a"]}]}"#,
    );
    let out = env.run(&["workflow", "submit", &cycle]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cycle"), "{}", stderr(&out));

    let file = declare(
        &env,
        "group.json",
        r#"{"group": [{"handler": "echo"}, {"handler": "echo"}]}"#,
    );
    let out = env.run(&["submit", "--workflow", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    id.parse::<u64>().expect("an id");
    let out = env.run(&["workflow", "cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("cancelled 2 node(s)"),
        "{}",
        stdout(&out)
    );
    let w = show(&env, &id);
    assert_eq!(w["state"], "cancelled");
    let out = env.run(&["workflow", "cancel", &id]);
    assert!(
        stdout(&out).contains("nothing to cancel"),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["workflow", "show", "424242"]);
    assert_eq!(out.status.code(), Some(5));
    let out = env.run(&["workflow", "cancel", "424242"]);
    assert_eq!(out.status.code(), Some(5));

    // Listed: newest first, by state, as a table or JSON.
    let out = env.run(&["submit", "--workflow", &file]);
    let running = stdout(&out).trim().to_string();
    let out = env.run(&["workflow", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("STATE") && lines[0].contains("LEFT"),
        "{table}"
    );
    assert!(lines[1].trim_start().starts_with(&running), "{table}");
    assert!(lines[1].contains("running"), "{table}");
    assert!(lines[2].trim_start().starts_with(&id), "{table}");
    let out = env.run(&["workflow", "list", "--state", "cancelled", "--json"]);
    let listed: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(
        listed[0]["id"],
        serde_json::json!(id.parse::<u64>().unwrap())
    );
    assert_eq!(listed[0]["nodes"], 2);
    assert_eq!(listed[0]["left"], 0);
    let out = env.run(&["workflow", "list", "--limit", "1"]);
    assert!(
        stdout(&out).contains(&format!("--before {running}")),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["workflow", "list", "--before", &id]);
    assert!(stdout(&out).contains("no workflows"), "{}", stdout(&out));
    let out = env.run(&["workflow", "list", "--state", "done"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A chain whose middle step fails once: `workflow retry` runs that step
/// and the one skipped after it, and not the first step again.
#[test]
fn a_failed_chain_retried_runs_its_failed_part() {
    let env = Env::new();
    let mark = env.path("flaky-ran-once").to_string_lossy().into_owned();
    let ran = env.path("first-step-runs").to_string_lossy().into_owned();
    // Placeholders are braces in args, so the shell code goes in files.
    let first = declare(&env, "first.sh", &format!("echo x >> {ran}\n"));
    let flaky = declare(
        &env,
        "flaky.sh",
        &format!("test -e {mark} && exit 0\ntouch {mark}\nexit 1\n"),
    );
    let cfg = env
        .config(&format!(
            "[worker]\nslots = 4\npoll = \"20ms\"\n\
             [handlers.first]\nprogram = \"sh\"\nargs = [\"{first}\"]\n\
             [handlers.flaky]\nprogram = \"sh\"\nargs = [\"{flaky}\"]\nretries = 0\n\
             [handlers.echo]\nprogram = \"echo\"\nargs = [\"{{}}\"]\n"
        ))
        .to_string_lossy()
        .into_owned();
    let file = declare(
        &env,
        "chain.json",
        r#"{"chain": [{"handler": "first"}, {"handler": "flaky"}, {"handler": "echo"}]}"#,
    );
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let (id, _) = submit_and_wait(&env, &file, 1);
    let out = env.run(&["workflow", "retry", &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("2 node(s) put back"),
        "{}",
        stdout(&out)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let w = loop {
        let w = show(&env, &id);
        if w["state"] != "running" {
            break w;
        }
        assert!(std::time::Instant::now() < deadline, "not ended: {w}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(w["state"], "succeeded", "{w}");
    assert_eq!(node(&w, "step-2")["state"], "succeeded");
    assert_eq!(node(&w, "step-3")["state"], "succeeded");
    let runs = std::fs::read_to_string(&ran).expect("the first step ran");
    assert_eq!(runs.lines().count(), 1, "the first step ran once");
    let out = env.run(&["workflow", "retry", &id]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("nothing failed"), "{}", stdout(&out));
    let out = env.run(&["workflow", "retry", "424242"]);
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
}

/// `workflow check` finds nothing in a healthy workflow, and names the node
/// whose task's record was deleted under it (by hand, in the file); it
/// creates no store where there is none.
#[test]
fn the_stuck_check_names_a_node_whose_task_is_gone() {
    let env = Env::new();
    // A queue no worker serves: both nodes stay running.
    let file = declare(
        &env,
        "group.json",
        r#"{"queue": "nobody", "group": [{"handler": "echo"}, {"handler": "echo"}]}"#,
    );
    let out = env.run(&["workflow", "submit", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["workflow", "check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("no stuck node"), "{}", stdout(&out));

    let w = show(&env, "1");
    let task = node(&w, "task-2")["task"].as_u64().expect("a task");
    let db = rusqlite::Connection::open(env.path("q.db")).expect("the store's file");
    db.execute("DELETE FROM tasks WHERE id = ?1", [task as i64])
        .expect("delete the task's record");
    drop(db);
    let out = env.run(&["workflow", "check", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let found: Value = serde_json::from_str(&stdout(&out)).expect("one JSON array");
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found[0]["workflow"], 1);
    assert_eq!(found[0]["node"], "task-2");
    assert_eq!(found[0]["reason"], "task_gone");
    let out = env.run(&["workflow", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("record is gone"), "{}", stdout(&out));

    let nowhere = Env::new();
    let out = nowhere.run(&["workflow", "check"]);
    assert!(!out.status.success(), "no store: {}", stdout(&out));
    assert!(!nowhere.path("q.db").exists(), "a check creates no store");
}

/// A persistent child that answers `split` with an expansion (one `echo`
/// per item of its params) and anything else with its params.
const FAN_OUT: &str = r#"
import json, sys
for line in sys.stdin:
    req = json.loads(line)
    if req["handler"] == "split":
        group = [{"handler": "twice", "params": [x]} for x in req["params"]]
        result = {"$expand": {"group": group}}
    elif req["handler"] == "twice":
        result = req["params"][0] * 2
    else:
        result = req["params"]
    print(json.dumps({"id": req["id"], "result": result}), flush=True)
"#;

#[test]
fn a_step_fans_out_through_a_worker_and_show_tells_what_it_added() {
    let env = Env::new();
    std::fs::write(env.path("fan.py"), FAN_OUT).expect("write the child");
    let handler = |name: &str| {
        format!(
            "[handlers.{name}]\nprogram = \"python3\"\nargs = [{:?}]\npersistent = true\n",
            env.path("fan.py").to_string_lossy()
        )
    };
    let config = format!(
        "[worker]\nslots = 4\npoll = \"20ms\"\n{}{}{}",
        handler("split"),
        handler("twice"),
        handler("total")
    );
    let cfg = env.config(&config).to_string_lossy().into_owned();
    let file = declare(
        &env,
        "fan.json",
        r#"{"chain": [{"handler": "split", "params": [1, 2, 3]},
                      {"handler": "total"}]}"#,
    );
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let (id, _) = submit_and_wait(&env, &file, 0);
    let w = show(&env, &id);
    assert_eq!(w["nodes"].as_array().map(Vec::len), Some(5), "{w}");
    let split = node(&w, "step-1");
    assert_eq!(split["state"], "succeeded");
    assert_eq!(split["expanded"]["output"], "list");
    assert_eq!(
        split["expanded"]["last"],
        serde_json::json!(["step-1/task-1", "step-1/task-2", "step-1/task-3"])
    );
    // The step after it got the list of the added tasks' results.
    assert_eq!(node(&w, "step-2")["result"], serde_json::json!([[2, 4, 6]]));
    let out = env.run(&["workflow", "show", &id]);
    let text = stdout(&out);
    assert!(
        text.contains("expanded: 3 node(s) added, settles with the last 3"),
        "{text}"
    );
    assert!(text.contains("step-1/task-2"), "{text}");
}
