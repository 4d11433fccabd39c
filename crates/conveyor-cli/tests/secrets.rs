//! Credentials in a backend URL never reach the output: a store that cannot
//! be opened is reported with its URL's password (or NATS token, or secret
//! parameter, or the password of RabbitMQ's results URL) hidden, on every
//! backend, in the error and in the log.

mod common;

use std::process::{Command, Output};

use common::stderr;

/// `conveyor --backend URL status` with the log at debug, so every line a
/// failed open writes is seen.
fn status(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["--backend", url, "status"])
        .env_remove("CONVEYOR_URL")
        .env("CONVEYOR_LOG", "debug")
        .output()
        .expect("run conveyor")
}

#[test]
fn a_backend_that_cannot_be_opened_is_named_without_its_secrets() {
    // Port 1 on loopback: nothing listens there, so each open fails.
    let urls: [&'static str; 8] = [
        "redis://:hunter2@127.0.0.1:1/0",
        "redis://app:hunter2@127.0.0.1:1/0?prefix=x:",
        "postgres://app:hunter2@127.0.0.1:1/test",
        "postgres://app@127.0.0.1:1/test?password=hunter2",
        "amqp://guest:hunter2@127.0.0.1:1/%2f?results=redis://:hunter2@127.0.0.1:1",
        // The store beside the broker opens; the broker does not.
        "amqp://guest:hunter2@127.0.0.1:1/%2f?results=redis://127.0.0.1:6379/0?prefix=cvt-secrets:",
        "nats://hunter2@127.0.0.1:1",
        "nats://app:hunter2@127.0.0.1:1",
    ];
    let runs: Vec<_> = urls
        .into_iter()
        .map(|url| std::thread::spawn(move || (url, status(url))))
        .collect();
    for run in runs {
        let (url, out) = run.join().expect("thread");
        assert!(!out.status.success(), "{url}: opened?");
        let err = stderr(&out);
        assert!(
            err.contains("***"),
            "{url}: the URL is shown, redacted: {err}"
        );
        assert!(
            !err.contains("hunter2"),
            "{url}: the secret is shown: {err}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("hunter2"), "{url}: {stdout}");
    }
}
