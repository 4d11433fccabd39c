//! Real processes for crash tests: start one, read its output line by line,
//! SIGKILL it, and make sure none outlives the test.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process killed with SIGKILL when dropped, whose stdout lines arrive on
/// a channel.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Behind a lock so a `Proc` can be shared between threads.
    lines: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Proc {
    /// Starts `cmd` with stdout captured (stderr inherited, so its logs show in
    /// the test's output).
    pub fn spawn(mut cmd: Command) -> std::io::Result<Proc> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            forward(out, tx);
        }
        Ok(Proc {
            child,
            lines: std::sync::Mutex::new(rx),
        })
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, mpsc::Receiver<String>> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, waiting at most `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines().recv_timeout(timeout).ok()
    }

    /// Waits (at most `timeout`) for a stdout line containing `needle`; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines().recv_timeout(left).ok()?;
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    /// Every stdout line received so far, without waiting.
    pub fn drain_lines(&self) -> Vec<String> {
        self.lines().try_iter().collect()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a pid we spawned and have not reaped.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Waits for the process to exit, at most `timeout`; its exit code if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn forward(out: ChildStdout, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// True while a process with this pid exists (and is not a zombie we reaped).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The live (not zombie) processes whose parent is `parent`, read from
/// `/proc` (no `pgrep` needed).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // After the command name in parentheses: state, then ppid.
                let mut rest = stat.rsplit(')').next().unwrap_or("").split_whitespace();
                let state = rest.next();
                let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
                state != Some("Z") && ppid == Some(parent)
            })
        })
        .collect()
}

/// A process's command name (`/proc/PID/comm`).
pub fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// True when `pid` runs this very executable: a fork of this process, such
/// as conveyor's child-process reaper (one per process, not a leak).
pub fn is_fork_of_me(pid: u32) -> bool {
    match (
        std::fs::read_link(format!("/proc/{pid}/exe")),
        std::fs::read_link("/proc/self/exe"),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Waits up to `limit` for every process in `pids` to be gone; returns those
/// still alive then, after killing them with SIGKILL (so a failed test
/// leaves nothing behind).
pub fn wait_all_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|p| pid_alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    for p in &alive {
        // SAFETY: kill only sends a signal; a stale pid yields ESRCH.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    alive
}

/// `program` in a folder of `PATH`, when it is an executable file there.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
