//! `conveyor worker --python MODULE:APP` from the command line's side: the
//! app's own store URL, a mix with `conveyor.toml` handlers, and every
//! mistake a user can make refused with what to do.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::python::{python, stage};
use common::{stderr, stdout};
use conveyor_testkit::process::Proc;

/// `conveyor ARGS…` in `dir`, with the staged package importable and no
/// store named by the environment.
fn conveyor(dir: &Path, staged: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_conveyor"));
    c.args(args)
        .current_dir(dir)
        .env("PYTHONPATH", staged)
        .env("CONVEYOR_PYTHON", python())
        .env_remove("CONVEYOR_URL");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run conveyor")
}

/// A staged package and a directory holding `tasks.py` with `source`.
fn setup(source: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let staged = tempfile::tempdir().expect("tempdir");
    stage(staged.path());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tasks.py"), source).expect("write tasks.py");
    (staged, dir)
}

#[test]
fn the_worker_opens_the_apps_store_and_serves_its_queues() {
    let store = tempfile::tempdir().expect("tempdir");
    let url = format!("embedded://{}", store.path().join("app.db").display());
    let (staged, dir) = setup(&format!(
        "import conveyor\napp = conveyor.App({url:?})\n\n\
         @app.task(keep_completed=\"1h\")\ndef add(a, b):\n    return a + b\n\n\
         @app.task(queue=\"mail\")\ndef send(to):\n    return 'sent to ' + to\n"
    ));
    // The worker's log (stderr) read as its output lines.
    let mut cmd = conveyor(
        dir.path(),
        staged.path(),
        &["worker", "--python", "tasks:app", "--processes", "1"],
    );
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&1")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(dir.path());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => shell.env(k, v),
            None => shell.env_remove(k),
        };
    }
    let mut worker = Proc::spawn(shell).expect("start the worker");
    let start = worker
        .wait_for("conveyor worker:", Duration::from_secs(60))
        .expect("the worker's start line");
    assert!(start.contains("queues default, mail"), "{start}");
    assert!(start.contains("shared by 2 handlers"), "{start}");
    // Four tasks per child fetched ahead: one running, three waiting.
    assert!(
        start.contains("4 slots: 1 handler process at once"),
        "{start}"
    );
    let out = run(conveyor(
        dir.path(),
        staged.path(),
        &[
            "--backend",
            &url,
            "submit",
            "add",
            "[1, 2]",
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .env_remove("CONVEYOR_PYTHON"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "3");
    let out = run(&mut conveyor(
        dir.path(),
        staged.path(),
        &[
            "--backend",
            &url,
            "submit",
            "send",
            "{\"to\": \"ana\"}",
            "--queue",
            "mail",
            "--wait",
            "--timeout",
            "60s",
        ],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "\"sent to ana\"");
    // The task's keep_completed is its handler's retention: stamped on
    // each of its finished tasks as the expiry.
    let out = run(&mut conveyor(
        dir.path(),
        staged.path(),
        &["--backend", &url, "submit", "add", "[2, 3]"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let shown = loop {
        let out = run(&mut conveyor(
            dir.path(),
            staged.path(),
            &["--backend", &url, "show", "--json", &id],
        ));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
        if v["state"] == "completed" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "not completed: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let time = |k: &str| humantime::parse_rfc3339(shown[k].as_str().expect(k)).expect(k);
    assert_eq!(
        time("expires_at").duration_since(time("finished_at")).ok(),
        Some(Duration::from_secs(3600)),
        "{shown}"
    );
    worker.signal(libc::SIGTERM);
    assert!(worker.wait_exit(Duration::from_secs(30)).is_some());
    let _ = &mut cmd;
}

#[test]
fn mistakes_are_refused_with_what_to_do() {
    let (staged, dir) = setup("import conveyor\napp = conveyor.App('memory://')\nother = 1\n");
    for (args, needle) in [
        (
            vec!["worker", "--python", "nosuch:app"],
            "cannot import module 'nosuch'",
        ),
        (vec!["worker", "--python", "tasks:app"], "declares no task"),
        (
            vec!["worker", "--python", "tasks:other"],
            "not a conveyor.App",
        ),
        (
            vec!["worker", "--python", "tasks:missing"],
            "has no 'missing'",
        ),
        (
            vec!["worker", "--processes", "2", "--config", "none.toml"],
            "cannot read config",
        ),
        (
            vec!["worker", "--python", "tasks:app", "--processes", "0"],
            "at least 1",
        ),
    ] {
        let out = run(&mut conveyor(dir.path(), staged.path(), &args));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let toml = dir.path().join("conveyor.toml");
    std::fs::write(&toml, "[handlers.x]\nprogram = \"true\"\n").expect("write");
    let out = run(&mut conveyor(
        dir.path(),
        staged.path(),
        &["worker", "--processes", "2"],
    ));
    assert!(
        stderr(&out).contains("add --python MODULE:APP"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&toml).expect("remove conveyor.toml");
    // An interpreter without the package: the fix is named.
    let out = run(conveyor(
        dir.path(),
        staged.path(),
        &["worker", "--python", "tasks:app"],
    )
    .env("PYTHONPATH", "")
    .env("CONVEYOR_PYTHON", "python3"));
    assert!(
        stderr(&out).contains("pip install ./python"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_task_and_a_handler_may_not_share_a_name() {
    let (staged, dir) = setup(
        "import conveyor\napp = conveyor.App('memory://')\n\n@app.task\ndef add(a, b):\n    return a + b\n",
    );
    std::fs::write(
        dir.path().join("conveyor.toml"),
        "[handlers.add]\nprogram = \"true\"\n",
    )
    .expect("write");
    let out = run(&mut conveyor(
        dir.path(),
        staged.path(),
        &["worker", "--python", "tasks:app"],
    ));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("both"), "{}", stderr(&out));
}
