//! The operator commands on RabbitMQ with a Redis keeping the task records:
//! `conveyor status`, `queue list`, `dead list`, `dead retry` (the tasks run
//! again and complete) and `dead purge`, and `conveyor serve`'s API and
//! dashboard over the same parts, against a real broker and worker.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::namespace::Namespace;
use common::{stderr, stdout, wait_count, Env};
use conveyor::TaskState;
use conveyor_testkit::process::Proc;
use serde_json::Value;

/// `GET path` from `conveyor serve` at `addr`: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut c = TcpStream::connect(addr).expect("connect");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string())
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_queue_list_and_dead_commands_on_amqp_with_a_keeper() {
    let ns = Namespace::amqp_with_results("insp");
    let env = Env::with_backend(&ns.url);
    // `flaky` fails for good until its flag file exists.
    let flag = env.path("flag");
    let config = format!(
        "[worker]\nslots = 2\npoll = \"20ms\"\n\
         [handlers.flaky]\nprogram = \"sh\"\nargs = [\"-c\", \"test -e '{}'\"]\nretries = 0\n",
        flag.display()
    );
    let cfg = env.config(&config).to_string_lossy().into_owned();
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    for _ in 0..2 {
        let out = env.run(&["submit", "flaky"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let b = env.backend().await;
    wait_count(&b, TaskState::Dead, 2, Duration::from_secs(60)).await;

    let out = env.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json_lines(&stdout(&out));
    let default = rows
        .iter()
        .find(|r| r["queue"] == "default")
        .unwrap_or_else(|| panic!("no default queue in {rows:?}"));
    assert_eq!(default["dead"], 2, "{default}");
    // The worker registers in the keeper's store: status lists it.
    assert!(
        rows.iter().any(|r| r["worker"]["queues"][0] == "default"),
        "the worker is listed: {rows:?}"
    );
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("DEAD"), "{}", stdout(&out));

    let out = env.run(&["queue", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json_lines(&stdout(&out));
    assert!(
        rows.iter()
            .any(|r| r["queue"] == "default" && r["paused"] == false),
        "{rows:?}"
    );

    let out = env.run(&["dead", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dead = json_lines(&stdout(&out));
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead
        .iter()
        .all(|d| d["handler"] == "flaky" && d["queue"] == "default"));
    let out = env.run(&["dead", "list"]);
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));

    // The HTTP API and the dashboard read the same parts.
    let (mut serve, addr) = common::spawn_with_address(
        env.cmd(&["serve", "--listen", "127.0.0.1:0"]),
        "API at http://",
    );
    let (status, body) = http_get(&addr, "/api/v1/tasks?state=dead");
    assert!(status.contains(" 200"), "{status}: {body}");
    let page: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let listed = page["tasks"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, 2, "{page}");
    let (status, body) = http_get(&addr, "/api/v1/stats");
    assert!(
        status.contains(" 200") && body.contains("\"default\""),
        "{status}: {body}"
    );
    let (status, body) = http_get(&addr, "/api/v1/workers");
    assert!(
        status.contains(" 200") && body.contains("\"queues\":[\"default\"]"),
        "{status}: {body}"
    );
    let (status, body) = http_get(&addr, "/tasks?state=dead");
    assert!(
        status.contains(" 200") && body.contains("flaky"),
        "{status}: {body}"
    );
    serve.kill().expect("stop serve");
    let _ = serve.wait();

    // Retried once the handler can succeed: both run again and complete.
    std::fs::write(&flag, b"").expect("write the flag");
    let out = env.run(&["dead", "retry", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "requeued 2");
    wait_count(&b, TaskState::Completed, 2, Duration::from_secs(60)).await;
    let out = env.run(&["dead", "list"]);
    assert_eq!(stdout(&out).trim(), "no dead tasks");

    // One more dies, and is purged.
    std::fs::remove_file(&flag).expect("remove the flag");
    let out = env.run(&["submit", "flaky"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_count(&b, TaskState::Dead, 1, Duration::from_secs(60)).await;
    let id = json_lines(&stdout(&env.run(&["dead", "list", "--json"])))[0]["id"]
        .as_u64()
        .expect("a numeric id");
    let died = |r: Option<conveyor::durable::TaskRecord>| r.and_then(|r| r.finished_at);
    let first = died(b.get(conveyor::TaskId(id)).await.expect("get"));
    let out = env.run(&["dead", "retry", &id.to_string(), "12345"]);
    assert_eq!(out.status.code(), Some(1), "one id is not dead");
    assert_eq!(stdout(&out).trim(), "requeued 1");
    // It runs again, and dies again (the flag is gone).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = b.get(conveyor::TaskId(id)).await.expect("get");
        let again = r.as_ref().map(|r| r.state) == Some(TaskState::Dead) && died(r) > first;
        if again {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retried task never died again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = env.run(&["dead", "purge"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "purged 1");
    let out = env.run(&["dead", "list"]);
    assert_eq!(stdout(&out).trim(), "no dead tasks");
}
