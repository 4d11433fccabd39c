//! `conveyor worker` with a persistent Python handler: the helper printed by
//! `conveyor helper python`, a few long-lived children answering every task,
//! results stored for `submit --wait`, and the children gone with a SIGKILLed
//! worker.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{stdout, Env};
use conveyor::{Client, TaskId, TaskState, TaskType};
use conveyor_testkit::process::{wait_all_gone, Proc};
use serde_json::Value;

const TASKS: &str = r#"
import os, time
from conveyor_handler import serve

def add(p, task):
    return {"sum": p["a"] + p["b"], "pid": os.getpid()}

def hold(p, task):
    with open(os.path.join(p["dir"], "%d.tmp" % os.getpid()), "w") as f:
        f.write("x")
    os.rename(os.path.join(p["dir"], "%d.tmp" % os.getpid()),
              os.path.join(p["dir"], "%d" % os.getpid()))
    time.sleep(3600)

serve({"add": add, "hold": hold})
"#;

/// An env with the helper and the tasks program in place, and a config.
fn setup(slots: usize) -> (Env, String) {
    let env = Env::new();
    let helper = env.run(&["helper", "python"]);
    assert!(helper.status.success());
    std::fs::write(env.path("conveyor_handler.py"), &helper.stdout).expect("helper");
    std::fs::write(env.path("tasks.py"), TASKS).expect("tasks");
    let cfg = env.config(&format!(
        "[worker]\nslots = {slots}\npoll = \"20ms\"\n\
         [handlers.add]\nprogram = \"python3\"\nargs = [\"tasks.py\"]\npersistent = true\n\
         [handlers.hold]\nprogram = \"python3\"\nargs = [\"tasks.py\"]\npersistent = true\n"
    ));
    let cfg = cfg.to_string_lossy().into_owned();
    (env, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_handler_answers_every_task_from_a_few_children() {
    let (env, cfg) = setup(3);
    let mut ids = Vec::new();
    for n in 0..60 {
        let out = env.run(&["submit", "add", &format!("{{\"a\": {n}, \"b\": 1}}")]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        ids.push(TaskId(stdout(&out).trim().parse().expect("id")));
    }
    let worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let out = env.run(&[
        "submit",
        "add",
        r#"{"a": 40, "b": 2}"#,
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let waited: Value = serde_json::from_str(stdout(&out).trim()).expect("json result");
    assert_eq!(waited["sum"], 42);
    let b = env.backend().await;
    common::wait_count(&b, TaskState::Completed, 61, Duration::from_secs(60)).await;
    let client = Client::new(b);
    let ty: TaskType<Value, Value> = TaskType::named("add");
    let mut pids = BTreeSet::new();
    for (n, id) in ids.iter().enumerate() {
        let v = client.handle(&ty, *id).try_result().await.expect("result");
        let v = v.expect("finished");
        assert_eq!(v["sum"], n as u64 + 1);
        pids.insert(v["pid"].as_u64().expect("pid"));
    }
    assert!(
        (1..=3).contains(&pids.len()),
        "3 slots, at most 3 children: {pids:?}"
    );
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_worker_kills_its_persistent_children() {
    let (env, cfg) = setup(2);
    let dir = env.path("pids");
    std::fs::create_dir(&dir).expect("mkdir");
    for _ in 0..2 {
        let params = serde_json::json!({ "dir": dir }).to_string();
        assert!(env.run(&["submit", "hold", &params]).status.success());
    }
    let mut worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let deadline = Instant::now() + Duration::from_secs(30);
    let pids: Vec<u32> = loop {
        let pids: Vec<u32> = std::fs::read_dir(&dir)
            .expect("read_dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        if pids.len() == 2 {
            break pids;
        }
        assert!(
            Instant::now() < deadline,
            "the children never started: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    worker.kill9();
    let alive = wait_all_gone(&pids, Duration::from_secs(20));
    assert!(
        alive.is_empty(),
        "persistent children outlived the worker: {alive:?}"
    );
}
