//! Commands about tasks that must exist (`status`, `dead`, `result`,
//! `wait`, `cancel`, `show`) never create a store: a
//! missing file or schema is an error that names it, and nothing appears.
//! A bare word is not a file name, and `memory://` (one process only) is
//! refused by every command.

mod common;

use std::process::{Command, Output};

use common::stderr;

/// `conveyor ARGS…` in `dir` with no backend from the environment.
fn conveyor(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(args)
        .current_dir(dir)
        .env_remove("CONVEYOR_URL")
        .env("CONVEYOR_LOG", "warn")
        .output()
        .expect("run conveyor")
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn looking_at_a_missing_embedded_store_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["dead", "list"],
        vec!["result", "1"],
        vec!["wait", "1", "--timeout", "1s"],
        vec!["cancel", "1"],
        vec!["show", "1"],
        vec!["--backend", "embedded://./elsewhere.db", "status"],
    ] {
        let out = conveyor(dir.path(), &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains("no conveyor store at"), "{args:?}: {err}");
        assert!(entries(dir.path()).is_empty(), "{args:?} created a file");
    }
    // Once something was enqueued, the same command reads it.
    let out = conveyor(dir.path(), &["submit", "greet", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = conveyor(dir.path(), &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_bare_word_is_not_a_file_and_memory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["--backend", "bogus", "status"],
        vec!["--backend", "bogus", "submit", "greet", "{}"],
    ] {
        let out = conveyor(dir.path(), &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains("neither a backend URL nor a file path"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    for args in [
        vec!["--backend", "memory://", "status"],
        vec!["--backend", "memory://", "submit", "greet", "{}", "--wait"],
    ] {
        let out = conveyor(dir.path(), &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains("inside one process"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(entries(dir.path()).is_empty(), "a file was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looking_at_a_missing_postgres_schema_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = format!("nocreate_{:08x}", fastrand::u32(..));
    let url = format!("postgres://postgres@127.0.0.1/test?schema={schema}");
    let out = conveyor(dir.path(), &["--backend", &url, "status"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no conveyor schema"),
        "{}",
        stderr(&out)
    );
    let probe = conveyor::durable::PostgresBackend::builder("postgres://postgres@127.0.0.1/test")
        .schema(&schema)
        .migrate(false)
        .connect()
        .await
        .expect("connect");
    assert_eq!(
        probe.schema_version().await.expect("version"),
        None,
        "status created the schema"
    );
    // `migrate` creates it; then status reads it.
    let out = conveyor(dir.path(), &["--backend", &url, "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = conveyor(dir.path(), &["--backend", &url, "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    probe.drop_schema().await.expect("drop the schema");
}
