//! One item's outcome in `conveyor run`, and its line in the `--results` file.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use conveyor::{Outcome, ProcessOutput, TaskResult};

use super::input::Item;
use super::placeholder::Argv;
use super::state::{Entry, Prior};

/// An item ready to run: the task's params.
#[derive(Debug)]
pub struct Prepared {
    /// The input item.
    pub item: Item,
    /// Its command.
    pub argv: Argv,
}

/// How an item ended in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The program exited with 0.
    Succeeded,
    /// It failed on its last attempt (non-zero exit, could not start, bad input).
    Failed,
    /// Its last attempt ran past `--timeout` and was killed.
    TimedOut,
    /// It did not run to an outcome: interrupted, or halted before its start.
    NotRun,
    /// An earlier run (in the state file) settled it.
    Earlier(Prior),
}

impl Status {
    /// The name used in the results file.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::NotRun => "not_run",
            Status::Earlier(Prior::Succeeded) => "succeeded_earlier",
            Status::Earlier(Prior::Failed) => "failed_earlier",
        }
    }

    /// True for outcomes of this run that count as failures.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::TimedOut)
    }
}

/// One item's outcome.
#[derive(Debug)]
pub struct Record {
    /// The item.
    pub item: Item,
    /// Its command, when one was built.
    pub argv: Option<Vec<OsString>>,
    /// How it ended.
    pub status: Status,
    /// The last attempt's exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended the last attempt.
    pub signal: Option<i32>,
    /// Captured stdout (capped).
    pub stdout: Vec<u8>,
    /// Captured stderr (capped).
    pub stderr: Vec<u8>,
    /// True when stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// True when stderr was cut at the cap.
    pub stderr_truncated: bool,
    /// Attempts started.
    pub attempts: u32,
    /// When the last attempt started.
    pub started: Option<SystemTime>,
    /// When the outcome was decided.
    pub finished: SystemTime,
    /// Why it failed.
    pub error: Option<String>,
}

/// Converts the engine's monotonic instants to wall-clock times.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: tokio::time::Instant,
    wall: SystemTime,
}

impl WallClock {
    /// Anchored now.
    pub fn now() -> Self {
        Self {
            at: tokio::time::Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of `t`.
    pub fn wall(&self, t: tokio::time::Instant) -> SystemTime {
        if t >= self.at {
            self.wall + (t - self.at)
        } else {
            self.wall - (self.at - t)
        }
    }
}

impl Record {
    /// An item settled without running (bad input, earlier outcome, not started).
    pub fn settled(item: Item, status: Status, error: Option<String>) -> Self {
        Self {
            item,
            argv: None,
            status,
            exit_code: None,
            signal: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            attempts: 0,
            started: None,
            finished: SystemTime::now(),
            error,
        }
    }

    /// The record of a task's result.
    pub fn from_result(
        prepared: Prepared,
        result: TaskResult,
        clock: &WallClock,
        timeout: Option<Duration>,
    ) -> Self {
        let Prepared { item, argv } = prepared;
        let mut rec = Self::settled(item, Status::NotRun, None);
        rec.argv = Some(argv.items);
        rec.attempts = result.attempts;
        rec.started = result.started_at.map(|t| clock.wall(t));
        rec.finished = clock.wall(result.finished_at);
        let output = match result.outcome {
            Outcome::Succeeded(out) => {
                rec.status = Status::Succeeded;
                out.downcast::<ProcessOutput>().ok()
            }
            Outcome::Failed(err) => {
                rec.status = Status::Failed;
                rec.error = Some(err.message().to_string());
                err.detail::<ProcessOutput>().cloned()
            }
            Outcome::TimedOut => {
                rec.status = Status::TimedOut;
                rec.error = Some(match timeout {
                    Some(t) => format!(
                        "timed out after {} (process group killed)",
                        humantime::format_duration(t)
                    ),
                    None => "timed out".to_string(),
                });
                None
            }
            Outcome::Panicked(msg) => {
                rec.status = Status::Failed;
                rec.error = Some(format!("internal error: {msg}"));
                None
            }
            Outcome::Cancelled => None,
        };
        if let Some(out) = output {
            rec.exit_code = out.code;
            rec.signal = out.signal;
            rec.stdout = out.stdout;
            rec.stderr = out.stderr;
            rec.stdout_truncated = out.stdout_truncated;
            rec.stderr_truncated = out.stderr_truncated;
        }
        rec
    }

    /// The state file's entry, for final outcomes of this run.
    pub fn entry(&self) -> Option<Entry<'_>> {
        let outcome = match self.status {
            Status::Succeeded => Prior::Succeeded,
            Status::Failed | Status::TimedOut => Prior::Failed,
            Status::NotRun | Status::Earlier(_) => return None,
        };
        let finished_ms = self
            .finished
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Some(Entry {
            seq: self.item.seq,
            item: &self.item.raw,
            outcome,
            exit_code: self.exit_code,
            attempts: self.attempts,
            finished_ms,
            error: self.error.as_deref(),
        })
    }

    /// The `--results` line: one JSON object, output capped at `cap` bytes each.
    pub fn to_json(&self, cap: usize) -> serde_json::Value {
        let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(cap)]).into_owned();
        let argv: Option<Vec<String>> = self
            .argv
            .as_ref()
            .map(|a| a.iter().map(|s| s.to_string_lossy().into_owned()).collect());
        let time = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        let duration_ms = self.started.map(|s| {
            let d = self.finished.duration_since(s).unwrap_or_default();
            (d.as_secs_f64() * 1e6).round() / 1e3
        });
        serde_json::json!({
            "seq": self.item.seq,
            "line": self.item.line,
            "item": String::from_utf8_lossy(&self.item.raw),
            "argv": argv,
            "status": self.status.as_str(),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": text(&self.stdout),
            "stderr": text(&self.stderr),
            "stdout_truncated": self.stdout_truncated || self.stdout.len() > cap,
            "stderr_truncated": self.stderr_truncated || self.stderr.len() > cap,
            "attempts": self.attempts,
            "start": self.started.map(time),
            "end": time(self.finished),
            "duration_ms": duration_ms,
            "error": self.error,
        })
    }
}
