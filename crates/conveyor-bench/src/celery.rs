//! Celery, the peer: a real Celery 5 worker from PyPI, installed in the
//! benchmark's own virtualenv, on the same broker as conveyor (Redis or
//! RabbitMQ), processing the same number of no-op Python tasks.
//!
//! The script enqueues every task first (`apply_async`, one call each), then
//! starts the worker in the same process. A `task_postrun` signal counts
//! finished tasks in shared memory (created before the pool forks, so every
//! prefork child adds to the same counter); a watcher thread polls the counter
//! as conveyor's side polls its store, and stops the worker once every task
//! has run. On Redis, keys live under a prefix of their own (kombu's
//! `global_keyprefix`), deleted at the end; on RabbitMQ the queue has a name
//! of its own, deleted at the end, and "results on" is Celery's `rpc://`
//! result backend (replies as messages on the same broker).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Celery the benchmark installs.
const CELERY: &str = "celery[redis]>=5.5,<6";

/// The driver script: `python celery_bench.py URL PREFIX N POOL CONCURRENCY
/// RESULTS(on|off) QUEUE_TYPE(classic|quorum) OUT LIMIT`; writes one JSON
/// object to OUT: the rates, or `error` when not every task was done within
/// LIMIT seconds of the worker's start.
const SCRIPT: &str = r#"
import json, multiprocessing, os, signal, sys, threading, time
from celery import Celery
from celery.signals import task_postrun, worker_ready

url, prefix, n, pool, conc, results, queue_type, out, limit = sys.argv[1:10]
n, conc, results, limit = int(n), int(conc), results == "on", int(limit)
amqp = url.startswith("amqp")
queue = prefix + "q"
backend = ("rpc://" if amqp else url) if results else None
app = Celery("bench", broker=url, backend=backend)
app.conf.update(
    task_ignore_result=not results,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)
if amqp:
    app.conf.update(task_default_queue_type=queue_type)
else:
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
    )

@app.task(name="noop")
def noop():
    return None

done = multiprocessing.Value("q", 0)

@task_postrun.connect
def count(**_):
    with done.get_lock():
        done.value += 1

t0 = time.perf_counter()
for _ in range(n):
    noop.apply_async(queue=queue)
enqueue_rate = n / (time.perf_counter() - t0)
started = time.perf_counter()

def watch():
    first, seen = None, 0
    while done.value < n:
        if first is None and done.value > 0:
            first, seen = time.perf_counter(), done.value
        if time.perf_counter() - started > limit:
            with open(out, "w") as f:
                json.dump({"error": f"{done.value} of {n} tasks done in {limit} s"}, f)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(0.02)
    last = time.perf_counter()
    with open(out, "w") as f:
        json.dump({"enqueue_per_s": enqueue_rate,
                   "processed_per_s": (n - seen) / (last - first) if first and last > first else None,
                   "wall_s": last - started}, f)
    os.kill(os.getpid(), signal.SIGTERM)

@worker_ready.connect
def go(**_):
    threading.Thread(target=watch, daemon=True).start()

try:
    app.worker_main(["worker", "-P", pool, "-c", str(conc), "-Q", queue, "--without-heartbeat",
                     "--without-gossip", "--without-mingle", "-l", "WARNING"])
finally:
    if amqp:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
            conn.default_channel.exchange_delete(queue)
    else:
        import redis
        r = redis.Redis.from_url(url)
        for key in r.scan_iter(prefix + "*", count=1000):
            r.delete(key)
"#;

/// One Celery measurement.
#[derive(Debug, Clone, Copy)]
pub struct CeleryRun {
    /// `apply_async` calls per second.
    pub enqueue_per_s: f64,
    /// Tasks per second finished after the first poll that saw any, up to
    /// the last.
    pub processed_per_s: f64,
}

/// A Python with Celery installed: the benchmark's virtualenv
/// (`CONVEYOR_BENCH_VENV`, else one in the temporary directory), made on
/// first use. `Err` says why there is none.
pub fn python() -> Result<PathBuf, String> {
    let venv = std::env::var_os("CONVEYOR_BENCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("conveyor-bench-celery-venv"));
    if !venv.join("bin").join("python").exists() {
        eprintln!("  installing {CELERY} into {} (once)...", venv.display());
    }
    conveyor_testkit::python::venv_at(&venv, &[CELERY], &["celery", "redis"])
}

/// How a Celery worker is set up for one measurement.
#[derive(Debug, Clone, Copy)]
pub struct CeleryConfig<'a> {
    /// `prefork` or `solo`.
    pub pool: &'a str,
    /// Processes (prefork) or 1 (solo).
    pub concurrency: usize,
    /// The result backend on (Redis: the same Redis; RabbitMQ: `rpc://`).
    pub results: bool,
    /// RabbitMQ's queue type for Celery's queue: `classic` (Celery's
    /// default) or `quorum` (what conveyor uses); ignored on Redis.
    pub queue_type: &'a str,
}

impl CeleryConfig<'_> {
    /// A row name: `Celery prefork -c 2, results off`.
    pub fn subject(&self) -> String {
        format!(
            "Celery {} -c {}, results {}",
            self.pool,
            self.concurrency,
            if self.results { "on" } else { "off" }
        )
    }
}

/// Runs `n` no-op tasks through a Celery worker set up as `config` on
/// `broker_url` (Redis or RabbitMQ), in `dir`.
pub fn measure(
    python: &Path,
    dir: &Path,
    broker_url: &str,
    n: usize,
    config: CeleryConfig<'_>,
) -> Result<CeleryRun, String> {
    let CeleryConfig {
        pool,
        concurrency,
        results,
        queue_type,
    } = config;
    let script = dir.join("celery_bench.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("cannot write the script: {e}"))?;
    let out = dir.join(format!(
        "celery-{pool}-{concurrency}-{results}-{queue_type}.json"
    ));
    let _ = std::fs::remove_file(&out);
    let prefix = format!(
        "{}:",
        crate::namespace::unique("conveyor-bench-celery", '-')
    );
    let status = Command::new(python)
        .arg(&script)
        .args([broker_url, &prefix, &n.to_string(), pool])
        .arg(concurrency.to_string())
        .arg(if results { "on" } else { "off" })
        .arg(queue_type)
        .arg(&out)
        .arg(crate::report::WORKLOAD_LIMIT.as_secs().to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start Celery: {e}"))?;
    let text = std::fs::read_to_string(&out)
        .map_err(|_| format!("the Celery run ended ({status}) without a result"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("Celery's result {text:?}: {e}"))?;
    if let Some(error) = v.get("error").and_then(serde_json::Value::as_str) {
        return Err(error.to_string());
    }
    let get = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    match (get("enqueue_per_s"), get("processed_per_s")) {
        (Some(enqueue_per_s), Some(processed_per_s)) => Ok(CeleryRun {
            enqueue_per_s,
            processed_per_s,
        }),
        _ => Err(format!("Celery's result lacks a rate: {text}")),
    }
}
