//! The Python package when things break: the store (a private Redis) killed
//! and restarted while a Python program is blocked in `get()` and the
//! worker's child is running the task; the `get()` returns the result once
//! the store is back, and the program enqueues and waits again after it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::python::{python, stage};
use conveyor_testkit::process::Proc;
use conveyor_testkit::servers::TempRedis;

const TASKS: &str = "import time\nimport conveyor\napp = conveyor.App()\n\n\
@app.task(retries=5)\ndef slow(seconds):\n    time.sleep(seconds)\n    return seconds\n";

/// The program under test: enqueues, says so, waits for the result, then
/// enqueues and waits again (after the outage).
const CLIENT: &str = "import sys\nimport tasks\n\
h = tasks.slow.delay(3)\nprint('waiting', flush=True)\n\
print('first', h.get(timeout=120), flush=True)\n\
print('second', tasks.slow.delay(0).get(timeout=120), flush=True)\n";

#[test]
fn get_survives_a_store_restart() {
    let mut redis = TempRedis::start();
    let url = format!("{}?prefix=pyfault:", redis.url());
    let staged = tempfile::tempdir().expect("tempdir");
    stage(staged.path());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tasks.py"), TASKS).expect("write tasks.py");
    let python = python();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_conveyor"));
    worker
        .args(["worker", "--python", "tasks:app", "--processes", "2"])
        .arg("--interpreter")
        .arg(&python)
        .current_dir(dir.path())
        .env("PYTHONPATH", staged.path())
        .env("CONVEYOR_URL", &url);
    let mut worker = Proc::spawn(worker).expect("start the worker");

    let mut client = Command::new(&python)
        .args(["-c", CLIENT])
        .current_dir(dir.path())
        .env(
            "PYTHONPATH",
            format!("{}:{}", staged.path().display(), dir.path().display()),
        )
        .env("CONVEYOR_URL", &url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the client");
    let (tx, lines) = mpsc::channel();
    let out = client.stdout.take().expect("the client's stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| panic!("the client never printed {what}"))
    };
    assert_eq!(next("waiting"), "waiting");
    // The task is running in a child (it sleeps 3 s); the store goes away
    // under the waiting client and the running worker, then comes back.
    std::thread::sleep(Duration::from_millis(800));
    redis.kill();
    std::thread::sleep(Duration::from_secs(2));
    redis.restart();
    assert_eq!(next("the first result"), "first 3");
    assert_eq!(next("the second result"), "second 0");
    let status = client.wait().expect("the client exits");
    assert!(status.success(), "{status}");
    worker.signal(libc::SIGTERM);
    assert!(worker.wait_exit(Duration::from_secs(30)).is_some());
}
