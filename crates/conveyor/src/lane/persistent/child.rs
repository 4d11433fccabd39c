//! One long-lived child of a persistent handler: started in its own process
//! group (watched by the reaper), fed one task at a time, its stderr sent to
//! the log line by line, tagged with the task it is running.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use conveyor_core::TaskError;

use super::protocol::{parse, Line, MAX_REPLY};
use super::spec::PersistentProcess;
use crate::lane::process::GroupGuard;

/// The longest stderr line logged as one entry; a longer one is split.
const MAX_LOG_LINE: usize = 64 << 10;
/// How many stderr lines of a task are kept for its error message.
const TAIL_LINES: usize = 5;

/// What the stderr reader shares with the child's owner.
#[derive(Default)]
struct Tag {
    /// The task running now (0: none).
    task: AtomicU64,
    /// The last stderr lines of the running task.
    tail: Mutex<VecDeque<String>>,
}

/// How a call ended.
pub(crate) enum CallEnd {
    /// The child replied; it can take another task.
    Reply(Result<serde_json::Value, TaskError>),
    /// The child is gone or broke the protocol: replace it; the task failed
    /// with this (retryable) error.
    Broken(TaskError),
}

/// A running child.
pub(crate) struct LiveChild {
    child: tokio::process::Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    group: GroupGuard,
    tag: Arc<Tag>,
    stderr: Option<JoinHandle<()>>,
    /// The child's pid (also its process group id).
    pub(crate) pid: u32,
    /// Tasks it has answered.
    pub(crate) tasks: u64,
}

impl LiveChild {
    /// Starts one child of `spec` for handler `handler`.
    pub(crate) fn start(spec: &PersistentProcess, handler: &Arc<str>) -> Result<Self, TaskError> {
        let mut child = spec
            .command
            .tokio_command(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let message = format!(
                    "cannot start {} for handler {handler}: {e}",
                    spec.command.program.to_string_lossy()
                );
                match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                        TaskError::permanent(message)
                    }
                    _ => TaskError::new(message),
                }
            })?;
        let pid = child.id().unwrap_or(0);
        let group = GroupGuard::watch(pid);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(TaskError::new("the child's pipes are missing"));
        };
        let tag = Arc::new(Tag::default());
        let forward = tokio::spawn(forward_stderr(stderr, handler.clone(), pid, tag.clone()));
        tracing::debug!(target: "conveyor::handler", handler = %handler, pid, "handler process started");
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            group,
            tag,
            stderr: Some(forward),
            pid,
            tasks: 0,
        })
    }

    /// True when the child has exited while idle.
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs task `id` (its request `line`) and reads the child's reply.
    /// Dropping the returned future (timeout, cancellation) leaves the child
    /// mid-task: its owner must drop it, which kills its group.
    pub(crate) async fn call(&mut self, id: u64, line: &[u8]) -> CallEnd {
        self.tag.tail.lock().clear();
        self.tag.task.store(id, Ordering::Relaxed);
        let end = match self.exchange(id, line).await {
            Ok(reply) => CallEnd::Reply(reply),
            // Still tagged with the task: its last stderr lines join the error.
            Err(why) => CallEnd::Broken(self.broken(why).await),
        };
        self.tag.task.store(0, Ordering::Relaxed);
        end
    }

    async fn exchange(
        &mut self,
        id: u64,
        line: &[u8],
    ) -> Result<Result<serde_json::Value, TaskError>, String> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err("its stdin is closed".into());
        };
        if let Err(e) = stdin.write_all(line).await {
            return Err(format!("it stopped reading its stdin ({e})"));
        }
        if let Err(e) = stdin.flush().await {
            return Err(format!("it stopped reading its stdin ({e})"));
        }
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let limit = MAX_REPLY as u64 + 1;
            match (&mut self.stdout)
                .take(limit)
                .read_until(b'\n', &mut buf)
                .await
            {
                Err(e) => return Err(format!("its stdout failed ({e})")),
                Ok(0) => return Err("it closed its stdout".into()),
                Ok(_) if buf.len() > MAX_REPLY => {
                    return Err(format!("it sent a line longer than {MAX_REPLY} bytes"))
                }
                Ok(_) => {}
            }
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            match parse(text, id) {
                Line::Reply(reply) => return Ok(reply),
                Line::Other => {
                    tracing::info!(
                        target: "conveyor::handler",
                        task = id,
                        pid = self.pid,
                        "stdout: {}",
                        String::from_utf8_lossy(text)
                    );
                }
            }
        }
    }

    /// Ends a child that broke off a task; the task's error says why, how it
    /// exited and what it last wrote to stderr.
    async fn broken(&mut self, why: String) -> TaskError {
        let status = match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => None,
        };
        self.group.kill();
        if let Some(forward) = self.stderr.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), forward).await;
        }
        let exit = match status {
            Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(c), _) => format!("; exit code {c}"),
                (None, Some(sig)) => format!("; killed by signal {sig}"),
                _ => String::new(),
            },
            None => String::new(),
        };
        let tail: Vec<String> = self.tag.tail.lock().drain(..).collect();
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr: {}", tail.join(" | "))
        };
        TaskError::new(format!(
            "handler process {} broke off the task: {why}{exit}{tail}",
            self.pid
        ))
    }

    /// Resident memory in bytes (Linux `/proc`), if known.
    pub(crate) fn resident_bytes(&self) -> Option<u64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages.saturating_mul(u64::try_from(page).ok()?))
    }

    /// Closes the child's stdin (its signal to exit), waits up to `grace`,
    /// then kills its group.
    pub(crate) async fn retire(mut self, grace: Duration) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        self.group.kill();
    }
}

/// Sends each stderr line of a child to the log, tagged with its task, and
/// keeps the task's last lines for its error message.
async fn forward_stderr(
    stderr: tokio::process::ChildStderr,
    handler: Arc<str>,
    pid: u32,
    tag: Arc<Tag>,
) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LOG_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf)).into_owned();
        let task = tag.task.load(Ordering::Relaxed);
        if task == 0 {
            tracing::info!(target: "conveyor::handler", handler = %handler, pid, "{text}");
        } else {
            tracing::info!(target: "conveyor::handler", handler = %handler, task, pid, "{text}");
            let mut tail = tag.tail.lock();
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
        }
    }
}
