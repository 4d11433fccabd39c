//! The `conveyor` command on the message brokers: a worker of command
//! handlers on RabbitMQ (with a result store beside it) and on NATS
//! JetStream, `submit --wait` getting each outcome with its exit status; and
//! on RabbitMQ without a result store, a clear refusal instead of a wait
//! that never ends.

mod common;

use common::namespace::Namespace;
use common::{stderr, stdout, Env};
use conveyor_testkit::process::Proc;
use serde_json::Value;

const CONFIG: &str = "[worker]\nslots = 2\npoll = \"20ms\"\n\
    [handlers.ok]\nprogram = \"echo\"\nargs = [\"{}\"]\n\
    [handlers.bad]\nprogram = \"false\"\nretries = 0\n";

fn outcomes_through(url: &str) {
    let env = Env::with_backend(url);
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let out = env.run(&["submit", "ok", "\"hello\"", "--wait", "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The command's outcome, as the handler left it.
    let line: Value = serde_json::from_str(stdout(&out).trim()).expect("a JSON line");
    assert_eq!(line["stdout"], "hello\n");
    assert_eq!(line["code"], 0);
    let out = env.run(&["submit", "bad", "--wait", "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "dead: {}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("exit code 1"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_with_a_result_store_runs_and_reports() {
    let ns = Namespace::amqp_with_results("cli");
    outcomes_through(&ns.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_runs_and_reports() {
    let ns = Namespace::nats("cli");
    outcomes_through(&ns.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_without_a_result_store_says_so() {
    let ns = Namespace::amqp("cli");
    let env = Env::with_backend(&ns.url);
    let out = env.run(&["submit", "ok", "1", "--wait", "--timeout", "5s"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("result store"), "{err}");
    let out = env.run(&["status"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not support"),
        "{}",
        stderr(&out)
    );
}
