//! Four worker processes share one backend and process 20,000 tasks while
//! workers are SIGKILLed at random and started again, or paused (SIGSTOP)
//! past their lease and resumed (SIGCONT), their late reports then refused
//! by fencing: every task completes,
//! none is lost, and the tasks that ran more than once (counted from an
//! execution log each worker process appends to) are no more than the
//! attempts beyond the first the store recorded (each a lost lease: fencing
//! lets nothing run twice otherwise), or, for a broker without records, than
//! the tasks that were in flight at the kills.
//!
//! The worker processes are this test binary run again with
//! `CONVEYOR_MP_ROLE=worker` and the test name `worker_role`: a real process
//! running a real `Worker` on a no-op handler, so 20,000 tasks take seconds
//! (the `conveyor` binary's handlers are commands, one child process each).
//! Redis and PostgreSQL each get a namespace of their own (`?prefix=`,
//! `?schema=`), dropped at the end; so do RabbitMQ and NATS (`?prefix=`).
//!
//! RabbitMQ keeps no task records to count, so there progress is read from
//! the execution logs, a killed worker is known to have held at most its
//! prefetch (its slots) unacknowledged, and at the end every worker is
//! stopped gracefully and the queue and its dead queue must both be empty:
//! every task was acknowledged.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::namespace::Namespace;
use conveyor::durable::Backend;
use conveyor::durable::ListParams;
use conveyor::durable::{connect, EnqueueOptions};
use conveyor::{Client, Handler, TaskError, TaskState, TaskType, Worker};
use conveyor_testkit::count_in;
use conveyor_testkit::process::Proc;

const TASKS: u64 = 20_000;
const WORKERS: usize = 4;
const SLOTS: usize = 16;
const KILLS: u32 = 6;
/// Pauses in a run (each holds the run up by the pause).
const PAUSES: u32 = 2;
const NOOP: TaskType<u64, ()> = TaskType::new("noop");

const ROLE: &str = "CONVEYOR_MP_ROLE";
const URL: &str = "CONVEYOR_MP_URL";
const LOG_DIR: &str = "CONVEYOR_MP_LOGS";

/// The worker process (a no-op when this binary runs as the test).
#[test]
fn worker_role() {
    if std::env::var(ROLE).as_deref() != Ok("worker") {
        return;
    }
    let (Ok(url), Ok(dir)) = (std::env::var(URL), std::env::var(LOG_DIR)) else {
        panic!("{URL} and {LOG_DIR} must be set");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let backend = connect(&url).await.expect("backend");
        let log = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(&dir).join(format!("exec-{}.log", std::process::id())))
                .expect("execution log"),
        );
        let noop = Handler::io(NOOP.name(), move |n: u64, _ctx| {
            let log = log.clone();
            async move {
                // One write(2) per line on an O_APPEND file: a SIGKILL leaves
                // whole lines only.
                (&*log)
                    .write_all(format!("{n}\n").as_bytes())
                    .map_err(|e| TaskError::new(e.to_string()))?;
                Ok::<_, TaskError>(())
            }
        });
        let worker = Worker::builder(backend)
            .handler(noop)
            .slots(SLOTS)
            .lease(Duration::from_secs(3))
            .poll_interval(Duration::from_millis(50))
            .maintenance(Duration::from_millis(250), Duration::from_secs(3600))
            .build()
            .expect("worker");
        println!("worker ready");
        worker.run().await.expect("worker run");
    });
}

fn spawn_worker(url: &str, logs: &Path) -> Proc {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["worker_role", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "worker")
        .env(URL, url)
        .env(LOG_DIR, logs);
    let p = Proc::spawn(cmd).expect("worker process");
    p.wait_for("worker ready", Duration::from_secs(30))
        .expect("the worker started");
    p
}

/// Tasks in `state` by the store's stats, or for a backend without them
/// (RabbitMQ): completed = executed at least once by the logs, running =
/// everything a killed worker may have held unacknowledged (its prefetch,
/// its slots).
async fn count(b: &Arc<dyn Backend>, state: TaskState, logs: &Path) -> u64 {
    if b.inspection().is_err() {
        return match state {
            TaskState::Completed => executions(logs).len() as u64,
            TaskState::Running => SLOTS as u64,
            _ => 0,
        };
    }
    count_in(b.as_ref(), state).await
}

/// Attempts beyond the first, over every completed task, as the store
/// recorded them: each is a lease that was lost (a kill, or a worker too
/// starved to renew in time) or a reservation that never ran. `None` for a
/// backend without records (RabbitMQ).
async fn extra_attempts(b: &Arc<dyn Backend>) -> Option<u64> {
    b.inspection().ok()?;
    let mut extra = 0u64;
    let mut after = None;
    loop {
        let page = b
            .list(
                &ListParams::new(TaskState::Completed)
                    .after_opt(after)
                    .limit(1000),
            )
            .await
            .expect("list completed tasks");
        let Some(last) = page.last() else {
            return Some(extra);
        };
        after = Some(last.id);
        extra += page
            .iter()
            .map(|t| u64::from(t.attempts.saturating_sub(1)))
            .sum::<u64>();
    }
}

/// Executions per task, from every worker process's log.
fn executions(logs: &Path) -> HashMap<u64, u32> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(logs).expect("log dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("log");
        for line in text.lines() {
            let n: u64 = line.parse().expect("a task number per line");
            *out.entry(n).or_default() += 1;
        }
    }
    out
}

/// What happens to a worker mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL, and a new worker process in its place.
    Kill,
    /// SIGSTOP for longer than its lease, then SIGCONT: it wakes up holding
    /// tasks that have run out their leases (and may run elsewhere).
    Pause,
}

/// Waits until a twentieth of the tasks have run (polled every 5 ms: at the
/// fastest store's pace, a hundred tasks between two looks), so a fault
/// struck then finds most of the run still to do.
///
/// Progress is read from the workers' logs, not from the store: a store
/// whose count is a scan (NATS) can take seconds to answer under this load,
/// long enough for the whole run to finish before the first fault.
async fn under_way(label: &str, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while (executions(logs).len() as u64) < TASKS / 20 {
        assert!(
            Instant::now() < deadline,
            "{label}: the workers did not get under way"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long a paused worker stays stopped: past its 3 s lease.
const PAUSED_FOR: Duration = Duration::from_secs(4);

async fn crash_run(label: &str, url: &str) {
    fault_run(label, url, Fault::Kill).await
}

async fn fault_run(label: &str, url: &str, fault: Fault) {
    let began = Instant::now();
    let logs = tempfile::tempdir().expect("tempdir");
    let backend = connect(url).await.expect("backend");
    let client = Client::new(backend.clone());
    let inputs: Vec<u64> = (0..TASKS).collect();
    for chunk in inputs.chunks(1000) {
        client
            .enqueue_many(&NOOP, chunk, &EnqueueOptions::new().max_attempts(20))
            .await
            .expect("enqueue");
    }
    let mut workers: Vec<Proc> = (0..WORKERS)
        .map(|_| spawn_worker(url, logs.path()))
        .collect();
    let mut kills = 0u32;
    let mut in_flight_at_kills = 0u64;
    // The first fault lands as soon as the run is under way: a fast store
    // finishes 20,000 no-op tasks within a second or so of its workers
    // starting, before a fixed delay would have struck. Later ones come at
    // random.
    under_way(label, logs.path()).await;
    while kills < KILLS {
        if kills > 0 {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(200..600))).await;
        }
        if executions(logs.path()).len() as u64 >= TASKS {
            break;
        }
        let i = fastrand::usize(..WORKERS);
        match fault {
            Fault::Kill => workers[i].kill9(),
            Fault::Pause => workers[i].signal(libc::SIGSTOP),
        }
        kills += 1;
        // Every task the killed worker had not reported is still running in
        // the store (its leases have not run out yet); other workers' running
        // tasks are counted too, so this is an upper bound.
        in_flight_at_kills += count(&backend, TaskState::Running, logs.path()).await;
        match fault {
            Fault::Kill => workers[i] = spawn_worker(url, logs.path()),
            Fault::Pause => {
                tokio::time::sleep(PAUSED_FOR).await;
                workers[i].signal(libc::SIGCONT);
            }
        }
        if fault == Fault::Pause && kills >= PAUSES {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while count(&backend, TaskState::Completed, logs.path()).await < TASKS {
        assert!(
            Instant::now() < deadline,
            "{label}: only {} of {TASKS} tasks completed",
            count(&backend, TaskState::Completed, logs.path()).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if backend.inspection().is_err() {
        // No records: stop every worker gracefully; then nothing may be left
        // waiting or dead in the broker.
        for w in &mut workers {
            w.signal(libc::SIGTERM);
        }
        for w in &mut workers {
            w.wait_exit(Duration::from_secs(30)).expect("graceful stop");
        }
        let amqp = conveyor::durable::AmqpBackend::connect(
            url.split('?').next().unwrap_or(url),
            conveyor::durable::AmqpOptions::default()
                .prefix(url.split("prefix=").nth(1).unwrap_or_default()),
            Arc::new(conveyor::SystemClock),
        )
        .await
        .expect("connect");
        assert_eq!(
            amqp.depth(conveyor::durable::DEFAULT_QUEUE_NAME)
                .await
                .expect("depth"),
            (0, 0),
            "{label}: tasks left waiting or dead"
        );
    }
    drop(workers);
    let runs = executions(logs.path());
    let missing: Vec<u64> = (0..TASKS).filter(|n| !runs.contains_key(n)).collect();
    assert!(missing.is_empty(), "{label}: never executed: {missing:?}");
    let duplicates: u64 = runs.values().map(|&c| u64::from(c - 1)).sum();
    let twice = runs.values().filter(|&&c| c > 1).count();
    eprintln!(
        "{label}: {TASKS} tasks completed by {WORKERS} processes in {:.1?}, {kills} {fault:?}s; \
         {duplicates} duplicate executions ({twice} tasks ran more than once); \
         in flight at the kills <= {in_flight_at_kills}; kills x slots = {}",
        began.elapsed(),
        u64::from(kills) * SLOTS as u64
    );
    assert!(kills >= 1, "{label}: no worker was hit (too fast?)");
    // A task runs again only after its lease was lost. The kills lose the
    // leases in flight; on a loaded machine a live worker can also miss a
    // renewal, and its tasks then rightly run again elsewhere (its own late
    // report is refused). So where the store records attempts, every
    // duplicate must be one of them; without records, only the kills can
    // account for them.
    match extra_attempts(&backend).await {
        Some(extra) => {
            eprintln!("{label}: {extra} attempts beyond the first recorded");
            assert!(
                duplicates <= extra,
                "{label}: {duplicates} duplicates but only {extra} attempts beyond the first recorded"
            );
        }
        None => assert!(
            duplicates <= in_flight_at_kills,
            "{label}: {duplicates} duplicates but at most {in_flight_at_kills} in flight at the kills"
        ),
    }
    assert_eq!(
        count(&backend, TaskState::Dead, logs.path()).await,
        0,
        "{label}: dead tasks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_four_workers_sigkilled_lose_nothing() {
    let ns = Namespace::redis("mp");
    crash_run("redis", &ns.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_four_workers_sigkilled_lose_nothing() {
    let ns = Namespace::postgres("mp");
    crash_run("postgres", &ns.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_four_workers_sigkilled_lose_nothing() {
    let ns = Namespace::amqp("mp");
    crash_run("amqp", &ns.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_four_workers_sigkilled_lose_nothing() {
    let ns = Namespace::nats("mp");
    crash_run("nats", &ns.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_four_workers_sigkilled_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("q.db");
    crash_run("embedded", &format!("embedded://{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_workers_paused_past_their_lease_lose_nothing() {
    let ns = Namespace::redis("mp_pause");
    fault_run("redis", &ns.url, Fault::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_workers_paused_past_their_lease_lose_nothing() {
    let ns = Namespace::postgres("mp_pause");
    fault_run("postgres", &ns.url, Fault::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_workers_paused_past_their_lease_lose_nothing() {
    let ns = Namespace::amqp("mp_pause");
    fault_run("amqp", &ns.url, Fault::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_workers_paused_past_their_lease_lose_nothing() {
    let ns = Namespace::nats("mp_pause");
    fault_run("nats", &ns.url, Fault::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_workers_paused_past_their_lease_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("q.db");
    fault_run(
        "embedded",
        &format!("embedded://{}", path.display()),
        Fault::Pause,
    )
    .await;
}
