//! Retention per handler (`[handlers.NAME] keep_completed`, `keep_dead`)
//! and per task (`submit --keep`), stamped on each finished task by a real
//! worker, read back with `conveyor show --json`; and refused, saying so,
//! where the store cannot keep it.

mod common;

use std::time::Duration;

use common::namespace::Namespace;
use common::{stderr, stdout, Env};
use conveyor_testkit::process::Proc;

const CONFIG: &str = "[worker]\npoll = \"50ms\"\nkeep_completed = \"1d\"\n\
    [handlers.short]\nprogram = \"true\"\nkeep_completed = \"1h\"\nkeep_dead = \"2h\"\n\
    [handlers.plain]\nprogram = \"true\"\n\
    [handlers.bad]\nprogram = \"false\"\nkeep_dead = \"2h\"\n";

/// Submits a task and waits for it; its id.
fn submit(env: &Env, args: &[&str]) -> u64 {
    let mut all = vec!["submit"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out).trim().parse().expect("an id")
}

/// `conveyor show --json ID` once it has finished (or after 30 s).
fn finished(env: &Env, id: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.run(&["show", "--json", &id.to_string()]);
        assert!(out.status.success(), "show {id}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
        if !v["finished_at"].is_null() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {id} did not finish: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long after its finish the task expires, if it has an expiry.
fn kept_for(v: &serde_json::Value) -> Option<Duration> {
    let time = |k: &str| {
        v[k].as_str()
            .map(|t| humantime::parse_rfc3339(t).unwrap_or_else(|e| panic!("{k} {t}: {e}")))
    };
    let (Some(done), Some(expires)) = (time("finished_at"), time("expires_at")) else {
        return None;
    };
    Some(
        expires
            .duration_since(done)
            .expect("expiry after the finish"),
    )
}

/// Each finished task carries its handler's retention (completed or dead),
/// its own `--keep` over it, or none (the worker's, at pruning): in the
/// embedded store.
#[test]
fn a_handler_and_a_task_keep_their_own_retention() {
    handler_and_task_retention(&Env::new());
}

/// The same on Redis, whose finished tasks with an expiry live apart from
/// its finished lists.
#[test]
fn a_handler_and_a_task_keep_their_own_retention_on_redis() {
    let ns = Namespace::redis("retention");
    handler_and_task_retention(&Env::with_backend(&ns.url));
}

fn handler_and_task_retention(env: &Env) {
    let cfg = env.config(CONFIG);
    let _worker =
        Proc::spawn(env.cmd(&["worker", "--config", &cfg.to_string_lossy()])).expect("worker");
    let short = submit(env, &["short", "{}"]);
    let plain = submit(env, &["plain", "{}"]);
    let own = submit(env, &["plain", "{}", "--keep", "5h"]);
    let own_over_handler = submit(env, &["short", "{}", "--keep", "10m"]);
    let bad = submit(env, &["bad", "{}", "--max-attempts", "1"]);
    let hour = Duration::from_secs(3600);
    let cases = [
        (short, "completed", Some(hour)),
        (plain, "completed", None),
        (own, "completed", Some(5 * hour)),
        (
            own_over_handler,
            "completed",
            Some(Duration::from_secs(600)),
        ),
        (bad, "dead", Some(2 * hour)),
    ];
    for (id, state, want) in cases {
        let v = finished(env, id);
        assert_eq!(v["state"], state, "task {id}: {v}");
        assert_eq!(kept_for(&v), want, "task {id}: {v}");
    }
    let v = finished(env, own);
    assert_eq!(v["keep_ms"], 5 * 3_600_000, "{v}");
    // The text form says when it goes.
    let out = env.run(&["show", &short.to_string()]);
    let text = stdout(&out);
    assert!(text.contains("kept until"), "{text}");
    assert!(
        text.contains("(in 59m") || text.contains("(in 1h"),
        "{text}"
    );
}

/// A store that cannot expire tasks one by one (RabbitMQ without a result
/// store) refuses a task with a keep, and a worker with a handler retention
/// refuses to start, each saying why; neither leaves anything behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_expiries_refuses_them_clearly() {
    let ns = Namespace::amqp("retention_refused");
    let env = Env::with_backend(&ns.url);
    let out = env.run(&["submit", "plain", "{}", "--keep", "1h"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("does not support a task's own keep"), "{err}");
    let cfg = env.config(CONFIG);
    let out = env.run(&["worker", "--config", &cfg.to_string_lossy()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("does not support a handler's own retention"),
        "{err}"
    );
    // Nothing was enqueued: a plain task sent now is the first one there.
    let b = env.backend().await;
    let sent = b
        .enqueue(conveyor::durable::NewTask::new("plain", b"{}".to_vec()))
        .await
        .expect("enqueue");
    let queues = vec!["default".to_string()];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        let got = b
            .reserve(conveyor::durable::ReserveParams::new(
                &queues,
                10,
                Duration::from_secs(30),
            ))
            .await
            .expect("reserve");
        if !got.is_empty() || std::time::Instant::now() > deadline {
            break got;
        }
        b.wait_for_work(&queues, Duration::from_millis(100)).await;
    };
    let ids: Vec<_> = got.iter().map(|r| r.lease.id).collect();
    assert_eq!(ids, vec![sent.id], "only the plain task is there");
}
