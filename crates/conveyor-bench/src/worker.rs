//! `conveyor worker` with handlers in Python, against a Celery worker on the
//! same Redis: `conveyor-bench worker [--backend URL] [--quick]`.
//!
//! - **no-op Python tasks/s**: tasks enqueued first, then a `conveyor worker`
//!   process whose handler is a persistent Python program (the shipped
//!   `conveyor_handler.py`, a no-op function) — beside Celery 5 (prefork, the
//!   default, and solo) running a no-op task on the same Redis, result
//!   backend off and on. Both sides are timed the same way: the store (or
//!   Celery's shared counter) is polled every 20 ms, and the rate counts the
//!   tasks finished after the first poll that saw any, up to the last. Both log at warning level; conveyor's default `info`
//!   (a line per task) is a row of its own.
//! - **a process per task**: the same handler as `python3 -c pass` per task,
//!   the mode persistent handlers replace.
//! - **the Celery tutorial**: three tasks that sleep 3 s on a worker with 3
//!   slots, from worker start to the last result (ideal: 3 s).
//!
//! Needs the release `conveyor` binary beside this one (`cargo build
//! --release -p conveyor-cli`), `python3` with `venv`, and PyPI for the
//! benchmark's own virtualenv (made once, in the temp directory, or
//! `$CONVEYOR_BENCH_VENV`). Without a Redis backend the Celery rows are
//! skipped with a note.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::durable::{Backend, NewTask};
use conveyor::TaskState;

use crate::celery;
use crate::namespace::Subject;
use crate::report::Report;

/// The Python tasks the conveyor worker runs: one no-op function.
const TASKS_PY: &str = "from conveyor_handler import serve\n\n\
def noop(params, task):\n    return None\n\n\
serve({\"noop\": noop})\n";

/// The longest a measured run may take before it is abandoned.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Runs the comparison.
pub async fn run(report: &mut Report, quick: bool, url: Option<&str>) {
    let url = url.unwrap_or("redis://127.0.0.1:6379/0");
    let Some(conveyor) = crate::cmdrun::conveyor_binary() else {
        report.note("no conveyor binary beside conveyor-bench: run `cargo build --release -p conveyor-cli` first");
        return;
    };
    let dir = std::env::temp_dir().join(format!("conveyor-bench-worker-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        report.note(format!("cannot create {}: {e}", dir.display()));
        return;
    }
    let python = match celery::python() {
        Ok(p) => p,
        Err(e) => {
            report.note(format!(
                "no Python with Celery ({e}): the Celery rows are skipped"
            ));
            PathBuf::from("python3")
        }
    };
    if let Err(e) = write_helper(&conveyor, &dir) {
        report.note(e);
        return;
    }
    let scale = if quick { 4 } else { 1 };
    let kind = Subject::new(Some(url), "probe").kind().await;
    let bench = format!("worker/{kind}");
    let celery_url = (kind == "redis").then(|| url.split('?').next().unwrap_or(url).to_string());

    // Celery first: its figure is the baseline of the rows after it.
    let celery_n = 6_000 / scale;
    let mut celery_best: Option<(String, f64)> = None;
    match &celery_url {
        Some(redis) if python.is_absolute() => {
            for (pool, conc, results) in [("prefork", 2, false), ("solo", 1, false), ("prefork", 2, true)] {
                let config = celery::CeleryConfig {
                    pool,
                    concurrency: conc,
                    results,
                    queue_type: "classic",
                };
                let subject = config.subject();
                match celery::measure(&python, &dir, redis, celery_n, config) {
                    Ok(r) => {
                        report.add(&bench, &subject, r.processed_per_s, "tasks/s");
                        if !results
                            && celery_best.as_ref().is_none_or(|(_, best)| r.processed_per_s > *best)
                        {
                            celery_best = Some((subject.clone(), r.processed_per_s));
                        }
                        report.add(&bench, &format!("{subject}: enqueue 1/call"), r.enqueue_per_s, "tasks/s");
                    }
                    Err(e) => report.note(format!("{subject}: {e}")),
                }
            }
        }
        _ => report.note(format!(
            "Celery runs on Redis here; the {kind} backend has no Celery rows (use --backend redis://…)"
        )),
    }
    let vs = |report: &mut Report, subject: &str, rate: f64| match &celery_best {
        Some((name, best)) => report.add_vs(&bench, subject, rate, "tasks/s", name, rate / best),
        None => report.add(&bench, subject, rate, "tasks/s"),
    };

    // conveyor worker, persistent Python children.
    let n = 40_000 / scale;
    for (slots, processes, log) in [(50, 2, "warn"), (50, 4, "warn"), (50, 4, "info")] {
        let config = persistent_config(&python, &dir, slots, processes);
        let subject = format!("conveyor persistent, {processes} procs, log {log}");
        match measure(&conveyor, &dir, url, &config, n, log).await {
            Ok(rate) => vs(report, &subject, rate),
            Err(e) => report.note(format!("{subject}: {e}")),
        }
    }

    // A process per task, the mode persistent handlers replace.
    let per_task_n = 400 / scale;
    let config = format!(
        "[worker]\nslots = 50\n[handlers.noop]\nprogram = {:?}\nargs = [\"-c\", \"pass\"]\n",
        python.display()
    );
    match measure(&conveyor, &dir, url, &config, per_task_n, "warn").await {
        Ok(rate) => vs(report, "conveyor, a process per task", rate),
        Err(e) => report.note(format!("a process per task: {e}")),
    }

    // The Celery tutorial: three 3 s tasks, three slots.
    let config = "[worker]\nslots = 3\n[handlers.noop]\nprogram = \"sleep\"\nargs = [\"3\"]\n";
    match wall(&conveyor, &dir, url, config, 3).await {
        Ok(secs) => report.add_vs(
            &bench,
            "tutorial: 3 tasks of 3 s, 3 slots",
            secs,
            "s",
            "ideal 3 s (time ratio)",
            secs / 3.0,
        ),
        Err(e) => report.note(format!("tutorial: {e}")),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `conveyor_handler.py` (as `conveyor helper python` prints it) and
/// the tasks file into `dir`.
fn write_helper(conveyor: &Path, dir: &Path) -> Result<(), String> {
    let out = Command::new(conveyor)
        .args(["helper", "python"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", conveyor.display()))?;
    if !out.status.success() {
        return Err(format!("`conveyor helper python` failed ({})", out.status));
    }
    std::fs::write(dir.join("conveyor_handler.py"), out.stdout)
        .and_then(|()| std::fs::write(dir.join("tasks.py"), TASKS_PY))
        .map_err(|e| format!("cannot write the Python files: {e}"))
}

fn persistent_config(python: &Path, dir: &Path, slots: usize, processes: usize) -> String {
    format!(
        "[worker]\nslots = {slots}\n[handlers.noop]\nprogram = {:?}\nargs = [\"tasks.py\"]\n\
         cwd = {:?}\npersistent = true\nprocesses = {processes}\n",
        python.display(),
        dir.display()
    )
}

/// When a worker run's tasks finished.
struct Timing {
    /// The worker was started.
    started: Instant,
    /// The first poll that saw finished tasks, and how many it saw.
    first: Instant,
    seen: u64,
    /// The poll that saw the last.
    last: Instant,
}

/// Enqueues `n` no-op tasks into a fresh namespace on `url`, runs a
/// `conveyor worker` with `config` (logging at `log`) until they have all
/// completed, then stops it and drops the namespace.
async fn run_worker(
    conveyor: &Path,
    dir: &Path,
    url: &str,
    config: &str,
    n: usize,
    log: &str,
) -> Result<Timing, String> {
    let subject = Subject::new(Some(url), "worker");
    let backend = subject.open().await;
    let result = async {
        enqueue(&backend, n).await?;
        let started = Instant::now();
        let mut worker = start(conveyor, dir, &subject.url, config, log)?;
        let timed = finished(&backend, n, started).await;
        stop(&mut worker);
        let (first, seen, last) = timed?;
        Ok(Timing {
            started,
            first,
            seen,
            last,
        })
    }
    .await;
    drop(backend);
    subject.close().await;
    result
}

/// Tasks/s of a worker run: the tasks finished after the first poll that
/// saw any, up to the last.
async fn measure(
    conveyor: &Path,
    dir: &Path,
    url: &str,
    config: &str,
    n: usize,
    log: &str,
) -> Result<f64, String> {
    let t = run_worker(conveyor, dir, url, config, n, log).await?;
    let span = t.last.saturating_duration_since(t.first).as_secs_f64();
    if span > 0.0 && t.seen < n as u64 {
        Ok((n as u64 - t.seen) as f64 / span)
    } else {
        Err("every task finished between two polls: raise the count".to_string())
    }
}

/// Seconds from a worker's start to its last finished task.
async fn wall(
    conveyor: &Path,
    dir: &Path,
    url: &str,
    config: &str,
    n: usize,
) -> Result<f64, String> {
    let t = run_worker(conveyor, dir, url, config, n, "warn").await?;
    Ok(t.last.saturating_duration_since(t.started).as_secs_f64())
}

async fn enqueue(backend: &Arc<dyn Backend>, n: usize) -> Result<(), String> {
    let mut left = n;
    while left > 0 {
        let batch = left.min(1_000);
        let tasks = (0..batch)
            .map(|_| NewTask::new("noop", b"{}".to_vec()))
            .collect();
        backend
            .enqueue_many(tasks)
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
        left -= batch;
    }
    Ok(())
}

fn start(conveyor: &Path, dir: &Path, url: &str, config: &str, log: &str) -> Result<Child, String> {
    let path = dir.join("conveyor.toml");
    std::fs::write(&path, config).map_err(|e| format!("cannot write the config: {e}"))?;
    let log_file = std::fs::File::create(dir.join("worker.log"))
        .map_err(|e| format!("cannot create the log: {e}"))?;
    Command::new(conveyor)
        .args(["--backend", url, "worker", "--config"])
        .arg(&path)
        .env("RUST_LOG", log)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", conveyor.display()))
}

/// Polls the store every 20 ms until `n` tasks have completed: when the
/// first were seen, how many they were, and when the last was seen (the
/// rate counts the tasks finished between the two).
async fn finished(
    backend: &Arc<dyn Backend>,
    n: usize,
    started: Instant,
) -> Result<(Instant, u64, Instant), String> {
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let stats = backend.stats().await.map_err(|e| format!("stats: {e}"))?;
        let done: u64 = stats.iter().map(|q| q.count(TaskState::Completed)).sum();
        let now = Instant::now();
        if done > 0 && first.is_none() {
            first = Some((now, done));
        }
        if done >= n as u64 {
            let (at, seen) = first.unwrap_or((now, done));
            return Ok((at, seen, now));
        }
        if now.duration_since(started) > RUN_LIMIT {
            return Err(format!(
                "only {done} of {n} tasks completed in {RUN_LIMIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops a worker with SIGTERM (it drains), killing it if it lingers.
fn stop(worker: &mut Child) {
    if let Ok(pid) = i32::try_from(worker.id()) {
        // SAFETY: kill only sends a signal to the child we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = worker.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = worker.kill();
    let _ = worker.wait();
}
