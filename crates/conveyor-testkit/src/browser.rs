//! A real browser for tests: Debian's headless Chromium behind its
//! ChromeDriver (the WebDriver protocol), started by the test on a port the
//! driver picks itself, and killed with the test's [`ChromeDriver`] value.
//!
//! When chromedriver is not installed, the first test that needs it runs
//! `scripts/browser.sh install` (apt-get, once per machine; the script
//! holds a lock), so `cargo test --workspace` needs no step before it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::process::which;

/// A running chromedriver; killed when dropped.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port (installing Chromium and
    /// chromedriver first when they are missing).
    pub fn start() -> Result<ChromeDriver, String> {
        let program = driver_path()?;
        let mut child = Command::new(&program)
            // Port 0: the driver takes a free port and says which.
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdout = child.stdout.take().ok_or("chromedriver has no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep reading to the end, so the driver never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = started_on(&line) {
                    let _ = tx.send(port);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => Ok(ChromeDriver { child, port }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err("chromedriver did not say it started within 30 s".into())
            }
        }
    }

    /// The WebDriver endpoint: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The capabilities of a headless Chromium session, `width`×`height`,
    /// for `fantoccini::ClientBuilder::capabilities` and the like.
    pub fn headless_chromium(
        width: u32,
        height: u32,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            format!("--window-size={width},{height}"),
        ];
        // Chromium's sandbox needs user namespaces a root test cannot use.
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            args.push("--no-sandbox".to_string());
        }
        let mut options = serde_json::json!({ "args": args });
        if let Some(binary) = chromium_path() {
            options["binary"] = serde_json::Value::String(binary.display().to_string());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert("goog:chromeOptions".into(), options);
        caps
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in chromedriver's `… was started successfully on port N.` line.
fn started_on(line: &str) -> Option<u16> {
    let rest = line.split("started successfully on port ").nth(1)?;
    rest.trim_end_matches('.').trim().parse().ok()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser.sh")
}

/// chromedriver: `CONVEYOR_CHROMEDRIVER`, or on `PATH`, or installed now.
fn driver_path() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("CONVEYOR_CHROMEDRIVER") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = which("chromedriver") {
        return Ok(p);
    }
    let script = script();
    eprintln!(
        "chromedriver is not installed: installing Chromium and chromedriver once with {} install",
        script.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .arg("install")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!("{} install failed ({status})", script.display()));
    }
    which("chromedriver").ok_or_else(|| "chromedriver is still not on PATH".to_string())
}

/// The Chromium binary, when one is on `PATH` under a known name.
fn chromium_path() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].into_iter().find_map(which)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_read_from_the_drivers_line() {
        assert_eq!(
            started_on("ChromeDriver was started successfully on port 39761."),
            Some(39761)
        );
        assert_eq!(started_on("Starting ChromeDriver 156 on port 0"), None);
    }
}
