//! `conveyor serve` as a user runs it: the API fuzzed against its own
//! OpenAPI document by schemathesis (from the package registry, in the
//! test's own virtualenv) — no 5xx, every answer as documented, the token
//! enforced — the listen address (a host name too) and the token checked
//! before anything is served, and SIGTERM obeyed with a live stream open.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

use common::Env;

/// Starts `conveyor serve ARGS` on a free loopback port; the child and its
/// address.
fn serve(env: &Env, args: &[&str]) -> (Child, String) {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    common::spawn_with_address(env.cmd(&all), "API at http://")
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("serve exit");
    assert!(status.success(), "conveyor serve exited with {status}");
}

#[test]
fn the_api_keeps_to_its_openapi_document_under_fuzzing() {
    let python = conveyor_testkit::python::venv(
        "schemathesis",
        &["schemathesis>=4.3,<5"],
        &["schemathesis"],
    )
    .expect("a Python with schemathesis");
    let env = Env::new();
    let token = "fuzz-token-0123456789";
    let (child, addr) = serve(&env, &["--token", token]);
    // Every check on every operation (schemathesis's default), but one on
    // two: a workflow declaration can be valid JSON Schema and still name a
    // node that does not exist or form a cycle, and a schedule's can hold
    // a cron expression, a time zone or a duration that does not read (or
    // no handler), which no schema can say, so a 400 for a schema-valid
    // declaration is the right answer there. (On the command line,
    // `--checks all` would override this file.)
    std::fs::write(
        env.path("schemathesis.toml"),
        "[[operations]]\ninclude-name = \"POST /api/v1/workflows\"\n\
         checks.positive_data_acceptance.enabled = false\n\n\
         [[operations]]\ninclude-name = \"PUT /api/v1/schedules/{name}\"\n\
         checks.positive_data_acceptance.enabled = false\n",
    )
    .expect("write schemathesis.toml");
    let out = conveyor_testkit::python::script(&python, "schemathesis")
        // Its cache and reports go to the test's directory, not the tree.
        .current_dir(env.dir.path())
        .args(["run", &format!("http://{addr}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // A wait is a long poll and lasts as long as it was asked to (at
        // most 20 s), by design.
        .args(["--max-response-time", "30"])
        .args(["--max-examples", "10", "--generation-deterministic"])
        // One worker: CPython 3.11's parser is not safe in threads.
        .args(["--request-timeout", "30", "--workers", "1", "--no-color"])
        .output()
        .expect("schemathesis");
    stop(child);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Tested: 27"), "{report}");
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let env = Env::new();
    let out = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{err}"
    );
    let out = env.run(&["serve", "--listen", "0.0.0.0:0", "--token", ""]);
    assert!(!out.status.success(), "an empty token is no token");
}

#[test]
fn read_only_opens_no_store_that_is_not_there() {
    let env = Env::new();
    let out = env.run(&["serve", "--read-only"]);
    assert!(!out.status.success());
    assert!(
        !env.path("q.db").exists(),
        "a read-only server created a store"
    );
}

#[test]
fn sigterm_stops_serve_within_5_s_with_a_live_stream_open() {
    let env = Env::new();
    let (mut child, addr) = serve(&env, &[]);
    // A dashboard tab's live stream, from a raw client: its head arrives,
    // and the stream stays open.
    let mut live = TcpStream::connect(&addr).expect("connect");
    live.write_all(b"GET /live/overview HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .expect("send");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = live.read(&mut buf).expect("read the stream's head");
        assert!(n > 0, "the server closed the stream");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.contains("text/event-stream"), "{head}");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(status) => status.expect("serve exit"),
        Err(_) => {
            // SAFETY: our own child, which did not stop.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("conveyor serve still runs 5 s after SIGTERM with a live stream open");
        }
    };
    assert!(status.success(), "conveyor serve exited with {status}");
    // The stream was ended, not left hanging.
    live.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = live.read_to_end(&mut rest);
}

#[test]
fn listen_takes_a_host_name() {
    let env = Env::new();
    let (child, addr) = common::spawn_with_address(
        env.cmd(&["serve", "--listen", "localhost:0"]),
        "API at http://",
    );
    let mut c = TcpStream::connect(&addr).expect("connect");
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop(child);
}

#[test]
fn a_short_token_is_refused_with_the_minimum() {
    let env = Env::new();
    for args in [
        &["serve", "--token", "x"][..],
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--token",
            "fifteen-chars!!",
        ],
    ] {
        // A server that starts anyway is stopped after a while, and fails
        // the test rather than hang it.
        let mut child = env
            .cmd(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(Duration::from_secs(30)).is_err() {
                // SAFETY: our own child, not yet reaped (the test waits
                // for it only after this thread is done).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        });
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read stderr");
        let _ = done.send(());
        watchdog.join().expect("watchdog");
        let status = child.wait().expect("exit");
        assert!(!status.success(), "{args:?} started: {err}");
        assert!(err.contains("use at least 16"), "{err}");
    }
}
