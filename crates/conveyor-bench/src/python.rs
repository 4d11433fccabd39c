//! Python baselines for the no-op full path, run as `python3 -c SCRIPT N` child
//! processes when `python3` is on `PATH`.
//!
//! Each script runs the same shape of work as conveyor's no-op benchmark —
//! producer → bounded queue → 50 workers → results → a counting callback — and
//! prints its own tasks per second on its last line, timed inside Python so the
//! interpreter's start-up is not counted.

use std::process::{Command, Stdio};

/// asyncio: `asyncio.Queue(maxsize=1000)`, 50 worker coroutines awaiting a no-op
/// coroutine, a bounded result queue and a handler task calling a counting callback.
const ASYNCIO: &str = r#"
import asyncio, sys, time
N = int(sys.argv[1])
async def main():
    jobs = asyncio.Queue(maxsize=1000)
    results = asyncio.Queue(maxsize=1000)
    count = 0
    def on_task_complete(r):
        nonlocal count
        count += 1
    async def noop(i):
        return i
    async def worker():
        while True:
            i = await jobs.get()
            if i is None:
                break
            await results.put(await noop(i))
    async def result_handler():
        while True:
            r = await results.get()
            if r is None:
                break
            on_task_complete(r)
    start = time.perf_counter()
    handler = asyncio.create_task(result_handler())
    workers = [asyncio.create_task(worker()) for _ in range(50)]
    for i in range(N):
        await jobs.put(i)
    for _ in workers:
        await jobs.put(None)
    await asyncio.gather(*workers)
    await results.put(None)
    await handler
    elapsed = time.perf_counter() - start
    assert count == N, (count, N)
    print(N / elapsed)
asyncio.run(main())
"#;

/// `concurrent.futures.ThreadPoolExecutor(50)`: submit every task, then count
/// them through `as_completed`.
const THREADPOOL: &str = r#"
import sys, time
from concurrent.futures import ThreadPoolExecutor, as_completed
N = int(sys.argv[1])
def noop(i):
    return i
count = 0
start = time.perf_counter()
with ThreadPoolExecutor(50) as ex:
    futures = [ex.submit(noop, i) for i in range(N)]
    for f in as_completed(futures):
        f.result()
        count += 1
elapsed = time.perf_counter() - start
assert count == N, (count, N)
print(N / elapsed)
"#;

/// A Python baseline.
#[derive(Debug, Clone, Copy)]
pub enum Baseline {
    /// [`ASYNCIO`].
    Asyncio,
    /// [`THREADPOOL`].
    ThreadPool,
}

impl Baseline {
    /// The subject name used in the report.
    pub fn subject(self) -> &'static str {
        match self {
            Baseline::Asyncio => "python asyncio",
            Baseline::ThreadPool => "python ThreadPoolExecutor(50)",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Baseline::Asyncio => ASYNCIO,
            Baseline::ThreadPool => THREADPOOL,
        }
    }
}

/// The interpreter's version line, or `None` when `python3` cannot be started.
pub fn available() -> Option<String> {
    let out = Command::new("python3")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Some(if text.is_empty() {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    } else {
        text
    })
}

/// Runs `baseline` over `n` tasks (a blocking call: run it off the runtime) and
/// returns its tasks per second.
pub fn run(baseline: Baseline, n: u64) -> Result<f64, String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(baseline.script())
        .arg(n.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "python3 exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .and_then(|l| l.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("unexpected output from python3: {stdout:?}"))
}
