//! The Python package beside Celery 5 on the same Redis: what a Python
//! program pays to enqueue and to wait.
//!
//! Both sides run the same driver (`python/client_bench.py`) over the same
//! task module (`python/bench_tasks.py`), in the benchmark's Celery
//! virtualenv, with conveyor's package staged beside it (the extension cargo
//! built in release next to this binary: `cargo build --release -p
//! conveyor-cli -p conveyor-python`):
//!
//! - `delay()` from 1 and 32 threads, no worker: calls per second;
//! - `delay().get()` one after another with a worker running (`conveyor
//!   worker --python`, 2 children; Celery prefork `-c 2`, the Redis result
//!   backend): the round trip's p50 and p99;
//! - no-op tasks with results stored, end to end: every `delay()`, then every
//!   `get()`, with the same workers; and conveyor's tasks enqueued by `map()`
//!   (Celery has no batch enqueue: its row stays the `delay()` loop);
//! - a chord of 1,000 header tasks and a body summing their results,
//!   submitted and waited for with each side's own canvas
//!   (`chord(header)(body).get()`), with the same workers, the median of
//!   three;
//! - the producer's own calls of that loop, with no worker: `delay()`, then
//!   reading each task's state, per task: the most the end-to-end loop could
//!   reach if the worker cost nothing.
//!
//! Each side works under a key prefix of its own, deleted after each row.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::celery;
use crate::report::{Measured, Report};

const DRIVER: &str = include_str!("../python/client_bench.py");
const TASKS: &str = include_str!("../python/bench_tasks.py");

/// The two sides, in the order rows are measured (the baseline first).
const SIDES: [&str; 2] = ["celery", "conveyor"];

/// Runs the comparison on the Redis `url` (default the machine's).
pub async fn run(report: &mut Report, quick: bool, url: Option<&str>) {
    let url = url.unwrap_or("redis://127.0.0.1:6379/0");
    let url = url.split('?').next().unwrap_or(url).to_string();
    if !url.starts_with("redis://") {
        report.note("the Python client benchmark runs on Redis, where Celery runs too");
        return;
    }
    let Some(conveyor) = crate::cmdrun::conveyor_binary() else {
        report.note("no conveyor binary beside conveyor-bench: run `cargo build --release -p conveyor-cli -p conveyor-python` first");
        return;
    };
    let Some(extension) = extension() else {
        report.note("no libconveyor_python beside conveyor-bench: run `cargo build --release -p conveyor-python` first");
        return;
    };
    let python = match celery::python() {
        Ok(p) => p,
        Err(e) => {
            report.note(format!("no Python with Celery: {e}"));
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("conveyor-bench-pyclient-{}", std::process::id()));
    if let Err(e) = stage(&dir, &extension) {
        report.note(e);
        return;
    }
    let scale = if quick { 5 } else { 1 };
    let bench = "python-client/redis";
    let ctx = Ctx {
        python: &python,
        conveyor: &conveyor,
        dir: &dir,
        url: &url,
    };

    for (threads, n) in [(1, 20_000 / scale), (32, 64_000 / scale)] {
        let [celery, ours] =
            SIDES.map(|side| ctx.measure(side, "enqueue", n, threads, false, "per_s"));
        let subject = format!(
            "delay(), {threads} thread{}",
            if threads > 1 { "s" } else { "" }
        );
        report.measured(bench, &format!("Celery {subject}"), &celery, "calls/s");
        report.compared(
            bench,
            &format!("conveyor {subject}"),
            &ours,
            "calls/s",
            "Celery",
            &celery,
        );
    }

    let n = 1_000 / scale;
    for key in ["p50_ms", "p99_ms"] {
        let [celery, ours] = SIDES.map(|side| ctx.measure(side, "roundtrip", n, 1, true, key));
        let label = key.trim_end_matches("_ms");
        report.measured(
            bench,
            &format!("Celery delay().get() {label}"),
            &celery,
            "ms",
        );
        report.compared(
            bench,
            &format!("conveyor delay().get() {label}"),
            &ours,
            "ms",
            "Celery (time ratio)",
            &celery,
        );
    }

    let n = 10_000 / scale;
    let [celery, ours] = SIDES.map(|side| ctx.measure(side, "e2e", n, 1, true, "per_s"));
    report.measured(
        bench,
        "Celery no-op tasks, results stored, end to end",
        &celery,
        "tasks/s",
    );
    report.compared(
        bench,
        "conveyor no-op tasks, results stored, end to end",
        &ours,
        "tasks/s",
        "Celery",
        &celery,
    );
    let batched = ctx.measure("conveyor", "e2e_map", n, 1, true, "per_s");
    report.compared(
        bench,
        "conveyor the same, enqueued by map()",
        &batched,
        "tasks/s",
        "Celery",
        &celery,
    );
    let n = 1_000 / scale;
    let [celery, ours] = SIDES.map(|side| ctx.measure(side, "chord", n, 1, true, "per_s"));
    let subject = format!("chord of {n} header tasks and a sum body, end to end");
    report.measured(bench, &format!("Celery {subject}"), &celery, "tasks/s");
    report.compared(
        bench,
        &format!("conveyor {subject}"),
        &ours,
        "tasks/s",
        "Celery",
        &celery,
    );
    // What the end-to-end loop could reach if the worker cost nothing: the
    // producer's own delay() and read of each task, no worker running.
    let [celery, ours] = SIDES.map(|side| ctx.measure(side, "producer", n, 1, false, "per_s"));
    report.measured(
        bench,
        "Celery the producer's own calls (delay() + state), no worker",
        &celery,
        "tasks/s",
    );
    report.compared(
        bench,
        "conveyor the producer's own calls (delay() + state()), no worker",
        &ours,
        "tasks/s",
        "Celery",
        &celery,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The release extension beside this binary.
fn extension() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    conveyor_testkit::python::extension_in(&[exe.parent()?])
}

/// The package, the driver and the tasks in `dir`.
fn stage(dir: &Path, extension: &Path) -> Result<(), String> {
    conveyor_testkit::python::stage_package(dir, extension)?;
    std::fs::write(dir.join("client_bench.py"), DRIVER).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("bench_tasks.py"), TASKS).map_err(|e| e.to_string())?;
    Ok(())
}

struct Ctx<'a> {
    python: &'a Path,
    conveyor: &'a Path,
    dir: &'a Path,
    url: &'a str,
}

impl Ctx<'_> {
    /// One figure (`key` of the driver's output) of `side`, with a worker
    /// running when `worker` is set, under a fresh prefix deleted after.
    fn measure(
        &self,
        side: &str,
        measure: &str,
        n: usize,
        threads: usize,
        worker: bool,
        key: &str,
    ) -> Measured {
        let prefix = format!(
            "{}:",
            crate::namespace::unique("conveyor-bench-pyclient", '-')
        );
        let mut running = if worker {
            Some(self.worker(side, &prefix)?)
        } else {
            None
        };
        let out = self.dir.join(format!("{side}-{measure}-{threads}.json"));
        let _ = std::fs::remove_file(&out);
        let status = Command::new(self.python)
            .arg(self.dir.join("client_bench.py"))
            .args([
                side,
                self.url,
                &prefix,
                measure,
                &n.to_string(),
                &threads.to_string(),
            ])
            .arg(&out)
            .env("PYTHONPATH", self.dir)
            .current_dir(self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
        if let Some(child) = running.as_mut() {
            stop(child);
        }
        clear(self.url, &prefix);
        let status = status.map_err(|e| format!("cannot run the driver: {e}"))?;
        let text = std::fs::read_to_string(&out)
            .map_err(|_| format!("the driver ended ({status}) without a result"))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{text:?}: {e}"))?;
        if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
            return Err(e.to_string());
        }
        v.get(key)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| format!("no {key} in {text}"))
    }

    /// A worker of `side` with two processes on the prefix.
    fn worker(&self, side: &str, prefix: &str) -> Result<Child, String> {
        let mut cmd = if side == "conveyor" {
            let mut c = Command::new(self.conveyor);
            c.args(["worker", "--python", "bench_tasks:app", "--processes", "2"])
                .arg("--interpreter")
                .arg(self.python)
                .arg("--backend")
                .arg(format!("{}?prefix={prefix}", self.url))
                .env("RUST_LOG", "warn");
            c
        } else {
            let mut c = Command::new(self.python);
            c.args([
                "-m",
                "celery",
                "-A",
                "bench_tasks",
                "worker",
                "-P",
                "prefork",
                "-c",
                "2",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ]);
            c
        };
        cmd.env("BENCH_SIDE", side)
            .env("BENCH_URL", self.url)
            .env("BENCH_PREFIX", prefix)
            .env("PYTHONPATH", self.dir)
            .current_dir(self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn()
            .map_err(|e| format!("cannot start the {side} worker: {e}"))
    }
}

/// Stops a worker: SIGTERM, then SIGKILL after 20 s.
fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    for _ in 0..200 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Deletes every key under `prefix` (on a thread of its own: the caller
/// is inside the benchmark's runtime).
fn clear(url: &str, prefix: &str) {
    let (url, prefix) = (url.to_string(), prefix.to_string());
    let cleared = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let b = conveyor::durable::RedisBackend::connect_with(
                &url,
                &prefix,
                Arc::new(conveyor::SystemClock),
            )
            .await
            .ok()?;
            b.clear().await.ok()
        })
    });
    let _ = cleared.join();
}
