//! The process lane's unit of work: a child process with args, env and stdin,
//! its output captured with size caps, and its whole process group killed on
//! timeout, cancellation or drop.
//!
//! Each child is started as the leader of a new process group, so `SIGKILL` to
//! the group also reaches the grandchildren it started (a shell pipeline, a
//! build tool's workers). The group is watched by the
//! child-process reaper, so it is killed even when this process dies of
//! `SIGKILL`. No shell is involved unless [`ProcessCommand::shell`]
//! asks for one: arguments reach the program verbatim.

use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use conveyor_core::TaskError;

use super::command::{child_command_methods, ChildCommand};

/// The default cap on captured stdout and on captured stderr: 1 MiB each.
pub const DEFAULT_OUTPUT_CAP: usize = 1 << 20;

/// A child process to run.
#[derive(Debug, Clone)]
pub struct ProcessCommand {
    command: ChildCommand,
    stdin: Option<Vec<u8>>,
    stdout_cap: usize,
    stderr_cap: usize,
    shell: bool,
}

/// What a finished child left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutput {
    /// The exit code, or `None` when a signal ended the process.
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Captured stdout, at most the stdout cap.
    pub stdout: Vec<u8>,
    /// Captured stderr, at most the stderr cap.
    pub stderr: Vec<u8>,
    /// True when stdout was longer than the cap (the rest was read and dropped).
    pub stdout_truncated: bool,
    /// True when stderr was longer than the cap.
    pub stderr_truncated: bool,
    /// The child's process id (also its process group id).
    pub pid: u32,
}

impl ProcessOutput {
    /// True when the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Describes the exit: `exit code 3` or `killed by signal 9`.
    pub fn describe_exit(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown exit".to_string(),
        }
    }
}

impl ProcessCommand {
    /// A command running `program` directly (looked up on `PATH`), no shell.
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            command: ChildCommand::new(program),
            stdin: None,
            stdout_cap: DEFAULT_OUTPUT_CAP,
            stderr_cap: DEFAULT_OUTPUT_CAP,
            shell: false,
        }
    }

    /// A command line run by `/bin/sh -c`. Only for trusted text: the shell
    /// interprets quotes, `;`, `$(…)` and globs.
    pub fn shell(script: impl Into<OsString>) -> Self {
        let mut cmd = Self::new("/bin/sh");
        cmd.command.args = vec!["-c".into(), script.into()];
        cmd.shell = true;
        cmd
    }

    child_command_methods!("the child", "the child's");

    /// Starts the child with an empty environment (plus what [`Self::env`] sets).
    pub fn env_clear(mut self) -> Self {
        self.command.env_clear = true;
        self
    }

    /// Bytes written to the child's stdin (then closed). Without it stdin is empty.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Caps how much stdout and stderr is kept (each).
    pub fn output_cap(mut self, stdout: usize, stderr: usize) -> Self {
        self.stdout_cap = stdout;
        self.stderr_cap = stderr;
        self
    }

    /// The arguments.
    pub fn get_args(&self) -> &[OsString] {
        &self.command.args
    }

    /// True when the command runs through `/bin/sh -c`.
    pub fn is_shell(&self) -> bool {
        self.shell
    }

    /// Starts the child in its own process group.
    pub fn spawn(&self) -> Result<RunningProcess, TaskError> {
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let child = self.command.tokio_command(stdin).spawn().map_err(|e| {
            let name = self.command.program.to_string_lossy();
            TaskError::permanent(format!("cannot start {name}: {e}"))
        })?;
        let pid = child.id().unwrap_or(0);
        Ok(RunningProcess {
            child,
            group: GroupGuard::watch(pid),
            stdin: self.stdin.clone(),
            caps: (self.stdout_cap, self.stderr_cap),
            pid,
        })
    }

    /// Runs the child to completion; kills its group if the returned future is
    /// dropped (on timeout or cancellation).
    pub async fn run(&self) -> Result<ProcessOutput, TaskError> {
        self.spawn()?.wait().await
    }
}

/// A started child. Dropping it kills the whole process group.
pub struct RunningProcess {
    child: tokio::process::Child,
    group: GroupGuard,
    stdin: Option<Vec<u8>>,
    caps: (usize, usize),
    pid: u32,
}

impl RunningProcess {
    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Feeds stdin, captures output and waits for exit. Dropping this future kills
    /// the process group.
    pub async fn wait(mut self) -> Result<ProcessOutput, TaskError> {
        let stdin = self.child.stdin.take();
        let stdout = self.child.stdout.take();
        let stderr = self.child.stderr.take();
        let input = self.stdin.take();
        let feed = async move {
            if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
                // A child that exits without reading stdin closes the pipe: not an error.
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            }
        };
        let (_, out, err, status) = tokio::join!(
            feed,
            capture(stdout, self.caps.0),
            capture(stderr, self.caps.1),
            self.child.wait()
        );
        let status = status.map_err(TaskError::from)?;
        // The leader is gone; make sure nothing it started lingers in the group.
        self.group.kill();
        let (stdout, stdout_truncated) = out;
        let (stderr, stderr_truncated) = err;
        Ok(ProcessOutput {
            code: status.code(),
            signal: signal_of(status),
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            pid: self.pid,
        })
    }
}

fn signal_of(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// Reads a pipe to its end, keeping at most `cap` bytes.
async fn capture<R: AsyncRead + Unpin>(pipe: Option<R>, cap: usize) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

/// Kills a process group when dropped; the [reaper](super::reaper) watches
/// it meanwhile.
pub(crate) struct GroupGuard {
    pgid: i32,
}

impl GroupGuard {
    /// Guards the group led by `pid` (a child started with `process_group(0)`).
    pub(crate) fn watch(pid: u32) -> GroupGuard {
        let pgid = i32::try_from(pid).unwrap_or(0);
        super::reaper::watch(pgid);
        GroupGuard { pgid }
    }

    /// Kills the whole group now (once).
    pub(crate) fn kill(&mut self) {
        if self.pgid > 0 {
            // SAFETY: killpg only sends a signal; a stale group id yields ESRCH.
            unsafe {
                libc::killpg(self.pgid, libc::SIGKILL);
            }
            super::reaper::unwatch(self.pgid);
            self.pgid = 0;
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Turns a finished child into a handler result: exit code 0 succeeds; anything
/// else fails (retryable) with the exit and the tail of stderr in the message and
/// the whole [`ProcessOutput`] attached as the error's detail.
pub fn exit_to_result(out: ProcessOutput) -> Result<ProcessOutput, TaskError> {
    if out.success() {
        return Ok(out);
    }
    let tail = String::from_utf8_lossy(&out.stderr[out.stderr.len().saturating_sub(300)..])
        .trim()
        .to_string();
    let msg = if tail.is_empty() {
        out.describe_exit()
    } else {
        format!("{}: {tail}", out.describe_exit())
    };
    Err(TaskError::new(msg).with_detail(out))
}

/// As a durable task's result: the exit status and the captured output as text
/// (invalid UTF-8 replaced), so `conveyor submit --wait` can print it.
impl serde::Serialize for ProcessOutput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ProcessOutput", 6)?;
        st.serialize_field("code", &self.code)?;
        st.serialize_field("signal", &self.signal)?;
        st.serialize_field("stdout", &String::from_utf8_lossy(&self.stdout))?;
        st.serialize_field("stderr", &String::from_utf8_lossy(&self.stderr))?;
        st.serialize_field("stdout_truncated", &self.stdout_truncated)?;
        st.serialize_field("stderr_truncated", &self.stderr_truncated)?;
        st.end()
    }
}
