//! `conveyor worker` stops within its grace + 2 s of SIGTERM in every state,
//! on Redis, PostgreSQL, NATS and RabbitMQ: idle (waiting for work, a fetch
//! out), busy with tasks longer than the grace (their process groups are
//! killed), and mid-outage (the network to the store
//! black-holed, so calls hang rather than fail). The worker reaches the store
//! through a fault-injecting proxy the test controls; every task it could not
//! finish is still in the store afterwards, waiting or running out its
//! lease, never lost.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::namespace::Namespace;
use conveyor::durable::Backend;
use conveyor::{TaskId, TaskState};
use conveyor_testkit::faults::{FaultProxy, Traffic};
use conveyor_testkit::process::Proc;

/// The worker's grace on SIGTERM.
const GRACE: Duration = Duration::from_secs(2);
/// How long past its grace a worker may take.
const SLACK: Duration = Duration::from_secs(2);

const CONFIG: &str = "[worker]\nslots = 4\n\
    [handlers.quick]\nprogram = \"sleep\"\nargs = [\"0.3\"]\n\
    [handlers.long]\nprogram = \"sleep\"\nargs = [\"30\"]\n";

/// What the worker is doing when SIGTERM comes.
#[derive(Debug, Clone, Copy)]
enum State {
    Idle,
    Busy,
    MidOutage,
}

/// `url` with its `127.0.0.1:PORT` replaced by `to`.
fn via(url: &str, service: &str, to: SocketAddr) -> String {
    url.replacen(service, &to.to_string(), 1)
}

async fn sigterm_in(label: &str, ns: &Namespace, service: &str, state: State) {
    let upstream: SocketAddr = service.parse().expect("service address");
    let proxy = FaultProxy::start(upstream);
    let url = via(&ns.url, service, proxy.addr());
    let env = common::Env::with_backend(&ns.url);
    let cfg = env.config(CONFIG).to_string_lossy().into_owned();
    let handler = match state {
        State::Busy => "long",
        _ => "quick",
    };
    let mut ids = Vec::new();
    if !matches!(state, State::Idle) {
        for _ in 0..20 {
            let out = env.run(&["submit", handler, "null"]);
            assert!(
                out.status.success(),
                "{label}: submit: {}",
                common::stderr(&out)
            );
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            ids.push(TaskId(id.parse().unwrap_or_else(|_| {
                panic!("{label}: submit printed {id:?}, not a task id")
            })));
        }
    }
    // The log (stderr) joins stdout, which the test reads; `exec` keeps the
    // worker's pid, the one the signal goes to.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "exec \"$0\" \"$@\" 2>&1",
        env!("CARGO_BIN_EXE_conveyor"),
    ])
    .args([
        "--backend",
        &url,
        "worker",
        "--config",
        &cfg,
        "--lease",
        "3s",
    ])
    .args(["--grace", "2s"])
    .env("CONVEYOR_LOG", "info")
    .current_dir(env.dir.path());
    let mut worker = Proc::spawn(cmd).expect("start the worker");
    worker
        .wait_for("conveyor worker", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{label}: the worker did not start"));
    let backend = env.backend().await;
    match state {
        State::Idle => tokio::time::sleep(Duration::from_millis(500)).await,
        State::Busy => {
            wait_running(&backend, &ids, 4).await;
        }
        State::MidOutage => {
            wait_running(&backend, &ids, 4).await;
            proxy.set(Traffic::Blackhole);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let began = Instant::now();
    worker.signal(libc::SIGTERM);
    let exit = worker.wait_exit(GRACE + SLACK + Duration::from_secs(20));
    let took = began.elapsed();
    eprintln!("SIGTERM {label} {state:?}: stopped in {took:?}");
    let lines = worker.drain_lines().join("\n");
    assert!(
        exit.is_some(),
        "{label} {state:?}: still running {took:?} after SIGTERM:\n{lines}"
    );
    assert!(
        took <= GRACE + SLACK,
        "{label} {state:?}: took {took:?} to stop after SIGTERM, over its grace + {SLACK:?}:\n{lines}"
    );
    proxy.set(Traffic::Pass);
    // Nothing lost: every task is completed, or still in the store; none
    // was dead-lettered for the stop.
    let (total, dead) = tally(&backend, &ids).await;
    assert_eq!(
        total,
        ids.len() as u64,
        "{label} {state:?}: tasks in the store"
    );
    assert_eq!(dead, 0, "{label} {state:?}: dead tasks");
}

/// The tasks in the store, and the dead ones among them: counted from its
/// statistics where it has them, else (RabbitMQ) from the records of `ids`
/// in its result store.
async fn tally(backend: &Arc<dyn Backend>, ids: &[TaskId]) -> (u64, u64) {
    if backend.inspection().is_ok() {
        let stats = backend.stats().await.expect("stats");
        let total = stats.iter().map(|s| s.counts.values().sum::<u64>()).sum();
        let dead = conveyor_testkit::count_in(backend.as_ref(), TaskState::Dead).await;
        return (total, dead);
    }
    let states = states_of(backend, ids).await;
    let dead = states.iter().filter(|s| **s == TaskState::Dead).count();
    (states.len() as u64, dead as u64)
}

/// The states of the records of `ids` that the result store holds.
async fn states_of(backend: &Arc<dyn Backend>, ids: &[TaskId]) -> Vec<TaskState> {
    let store = backend.result_store().expect("a result store");
    let mut states = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = store.get(*id).await.expect("read a record") {
            states.push(r.state);
        }
    }
    states
}

/// Waits until `n` tasks run.
async fn wait_running(backend: &Arc<dyn Backend>, ids: &[TaskId], n: u64) {
    if backend.inspection().is_ok() {
        return common::wait_count(backend, TaskState::Running, n, Duration::from_secs(30)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states = states_of(backend, ids).await;
        let running = states.iter().filter(|s| **s == TaskState::Running).count() as u64;
        if running == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {n} running tasks; have {running}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn every_state(label: &str, make: fn(&str) -> Namespace, service: &str) {
    for state in [State::Idle, State::Busy, State::MidOutage] {
        let ns = make(&format!("sigterm_{}", format!("{state:?}").to_lowercase()));
        sigterm_in(label, &ns, service, state).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_worker_stops_on_sigterm_in_every_state() {
    every_state("redis", Namespace::redis, "127.0.0.1:6379").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_worker_stops_on_sigterm_in_every_state() {
    every_state("postgres", Namespace::postgres, "127.0.0.1:5432").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_worker_stops_on_sigterm_in_every_state() {
    every_state("nats", Namespace::nats, "127.0.0.1:4222").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_worker_stops_on_sigterm_in_every_state() {
    every_state("amqp", Namespace::amqp_with_results, "127.0.0.1:5672").await;
}
