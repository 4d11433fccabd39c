//! Peak memory: a million no-op tasks through a job whose queue holds 1,000
//! should cost little more than an empty run, because every queue is bounded.
//!
//! Peak RSS is per process, so each workload runs in a fresh child: this binary
//! re-executed with the hidden `rss-child TASKS` subcommand, which runs the
//! no-op full path (see [`crate::noop::conveyor_noop`]) over `TASKS` tasks and
//! prints `VmHWM` from `/proc/self/status`. The empty baseline is the same child
//! with zero tasks: the runtime, the pool and a job, but no work.

use std::process::{Command, Stdio};

use crate::noop::conveyor_noop;
use crate::report::Report;

/// The line prefix the child prints its peak RSS (in kB) after.
const MARKER: &str = "rss-child VmHWM kB:";

/// The child's side: runs the workload, then prints its peak RSS. Returns the
/// process exit code.
pub async fn child(args: &[String]) -> i32 {
    let Some(tasks) = args.first().and_then(|a| a.parse::<u64>().ok()) else {
        eprintln!("usage: conveyor-bench rss-child TASKS");
        return 2;
    };
    conveyor_noop(tasks).await;
    match peak_rss_kb() {
        Some(kb) => {
            println!("{MARKER} {kb}");
            0
        }
        None => {
            eprintln!("VmHWM not found in /proc/self/status");
            1
        }
    }
}

/// `VmHWM` (peak resident set size, kB) of this process.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs a child over `tasks` tasks and returns its peak RSS in kB.
fn run_child(tasks: u64) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let out = Command::new(exe)
        .arg("rss-child")
        .arg(tasks.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARKER))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no peak RSS in the child's output: {stdout:?}"))
}

/// Measures and reports the empty baseline and the workload.
pub async fn run(report: &mut Report, quick: bool) {
    if !cfg!(target_os = "linux") {
        report.note("peak_rss: needs /proc/self/status (Linux); skipped");
        return;
    }
    let tasks: u64 = if quick { 200_000 } else { 1_000_000 };
    let measured = tokio::task::spawn_blocking(move || Ok((run_child(0)?, run_child(tasks)?)))
        .await
        .unwrap_or_else(|e| Err(format!("the child runner panicked: {e}")));
    let (empty, full) = match measured {
        Ok(pair) => pair,
        Err(e) => {
            report.note(format!("peak_rss: {e}"));
            return;
        }
    };
    let mb = |kb: u64| kb as f64 / 1024.0;
    let bench = "peak_rss queue=1000";
    report.add(bench, "empty workload (0 tasks)", mb(empty), "MB");
    report.add_vs(
        bench,
        &format!("conveyor, {tasks} no-op tasks"),
        mb(full),
        "MB",
        "empty workload",
        full as f64 / empty.max(1) as f64,
    );
}
