//! Helpers for driving the real `conveyor` binary against an embedded file.

#![allow(dead_code, missing_docs)]

pub mod namespace;
pub mod python;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::durable::Backend;
use conveyor::TaskState;
use conveyor_testkit::count_in;

/// A temp directory with a backend file and a config file.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// A backend other than the embedded file in `dir`.
    pub backend_url: Option<String>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            backend_url: None,
        }
    }

    /// An env whose commands use `url` as their backend.
    pub fn with_backend(url: &str) -> Env {
        Env {
            backend_url: Some(url.to_string()),
            ..Env::new()
        }
    }

    pub fn url(&self) -> String {
        match &self.backend_url {
            Some(url) => url.clone(),
            None => format!("embedded://{}", self.dir.path().join("q.db").display()),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `conveyor.toml` and returns its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let p = self.path("conveyor.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// `conveyor --backend URL ARGS…`, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_conveyor"));
        c.arg("--backend").arg(self.url()).args(args);
        c.env("CONVEYOR_LOG", "warn");
        c.current_dir(self.dir.path());
        c
    }

    /// Runs `conveyor ARGS…` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run conveyor")
    }

    /// Opens the same backend in this process.
    pub async fn backend(&self) -> Arc<dyn Backend> {
        conveyor::durable::connect(&self.url())
            .await
            .expect("open backend")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls the backend until `count(state) == n` in `queue` (or panics after `limit`).
pub async fn wait_count(b: &Arc<dyn Backend>, state: TaskState, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = count_in(b.as_ref(), state).await;
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {n} {state} tasks; have {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spawns `cmd` with its log on a pipe and `CONVEYOR_LOG=info`; returns the
/// child and the address it logs after `marker` (e.g. `"API at http://"`),
/// up to the next `/`. The rest of the log is drained, so the child never
/// blocks on a full pipe.
pub fn spawn_with_address(mut cmd: Command, marker: &'static str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .env("CONVEYOR_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn conveyor");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(marker).nth(1) {
                let _ = tx.send(rest.split('/').next().unwrap_or_default().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("conveyor logs an address after {marker:?}"));
    (child, addr)
}

/// Runs `conveyor [PREFIX…] worker --config CFG --log-format json` with
/// `RUST_LOG=filter` until the store holds `settled` (tasks per state), stops
/// it with SIGTERM, checks it exited cleanly and returns its log.
pub async fn json_log_worker(
    env: &Env,
    prefix: &[&str],
    cfg: &str,
    filter: &str,
    settled: &[(TaskState, u64)],
) -> String {
    let mut args = prefix.to_vec();
    args.extend(["worker", "--config", cfg, "--log-format", "json"]);
    let mut cmd = env.cmd(&args);
    cmd.env_remove("CONVEYOR_LOG").env("RUST_LOG", filter);
    let child = cmd
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("worker");
    let b = env.backend().await;
    for (state, n) in settled {
        wait_count(&b, *state, *n, Duration::from_secs(60)).await;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("worker exit");
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}
