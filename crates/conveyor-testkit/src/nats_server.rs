//! A private `nats-server` with JetStream for tests that must stop and start
//! it: on a free loopback port, its store in a temporary directory, killed
//! with SIGKILL and started again on the same port and directory, stopped
//! and removed on drop. [`TempNats::start`] panics when `nats-server` is not
//! installed (tests that need it are marked ignored by the `has_nats_server`
//! cfg flag on such a machine, [`crate::programs`]).
//!
//! Readiness is read from the server's log file (`Server is ready`, written
//! once JetStream has recovered its store), counted across restarts.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Proc;
use crate::programs::NATS_SERVER;
use crate::servers::{free_port, temp_dir};

/// A `nats-server -js` of a test's own.
#[derive(Debug)]
pub struct TempNats {
    dir: PathBuf,
    port: u16,
    program: PathBuf,
    server: Option<Proc>,
    /// `Server is ready` lines seen in the log so far.
    starts: usize,
    /// Further arguments (a cluster member's name, routes and ports).
    args: Vec<String>,
}

impl TempNats {
    /// Starts a server (panics when `nats-server` is not installed).
    pub fn start() -> TempNats {
        Self::start_with(NATS_SERVER.require(), free_port(), Vec::new())
    }

    /// Starts `program` on `port` with `args` besides the usual ones.
    pub(crate) fn start_with(program: PathBuf, port: u16, args: Vec<String>) -> TempNats {
        let mut n = TempNats {
            dir: temp_dir("nats"),
            port,
            program,
            server: None,
            starts: 0,
            args,
        };
        n.restart();
        n
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (what JetStream synced survives).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.server.take() {
            p.kill9();
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn ready_lines(&self) -> usize {
        std::fs::read_to_string(self.log())
            .map(|l| l.matches("Server is ready").count())
            .unwrap_or(0)
    }

    /// Starts the server again (killing a running one first) on the same
    /// port and store directory, and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new(&self.program);
        cmd.args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(self.log())
            .args(&self.args);
        let p = Proc::spawn(cmd).unwrap_or_else(|e| panic!("start nats-server: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ready_lines() <= self.starts {
            assert!(
                Instant::now() < deadline,
                "nats-server did not become ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.starts = self.ready_lines();
        self.server = Some(p);
    }
}

impl Drop for TempNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
