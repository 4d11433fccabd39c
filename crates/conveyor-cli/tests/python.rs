//! The Python package (`python/`) on every backend: its pytest suite
//! (`python/tests`) run by a real Python against the machine's servers, with
//! the native module cargo built for this run and a real `conveyor worker
//! --python` serving the tasks.
//!
//! The package is staged into a temporary directory (the Python sources and
//! the extension cargo built as a dev-dependency, renamed as Python loads
//! it), so the Rust code is built once for the CLI, these tests and the
//! package; `pip install ./python` builds the same crate with maturin.

mod common;

use std::process::Command;

use common::namespace::Namespace;
use common::python::{python, stage};
use conveyor_testkit::python::package_source;

/// Runs the pytest suite against `url`; `extra` are pytest's arguments.
fn pytest(url: &str, extra: &[&str]) {
    let staged = tempfile::tempdir().expect("tempdir");
    let root = stage(staged.path());
    let tests = package_source().join("tests");
    let work = tempfile::tempdir().expect("the worker's directory");
    let out = Command::new(python())
        .args([
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-x",
            "--tb=short",
        ])
        .args(extra)
        .arg(&tests)
        .env("PYTHONPATH", &root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CONVEYOR_URL", url)
        .env("CONVEYOR_BIN", env!("CARGO_BIN_EXE_conveyor"))
        .env("CONVEYOR_TEST_WORKDIR", work.path())
        .env_remove("CONVEYOR_PYTHON")
        .current_dir(work.path())
        .output()
        .expect("run pytest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "pytest failed on {url}:\n{text}");
}

#[test]
fn the_package_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    pytest(
        &format!("embedded://{}", dir.path().join("q.db").display()),
        &[],
    );
}

#[test]
fn the_package_on_redis() {
    let ns = Namespace::redis("py");
    pytest(&ns.url, &[]);
}

#[test]
fn the_package_on_postgres() {
    let ns = Namespace::postgres("py");
    pytest(&ns.url, &[]);
}

#[test]
fn the_package_on_rabbitmq() {
    let ns = Namespace::amqp_with_results_and_queues("py", &["other"]);
    pytest(&ns.url, &[]);
}

#[test]
fn the_package_on_nats() {
    let ns = Namespace::nats("py");
    pytest(&ns.url, &[]);
}

/// The package keeps its `py.typed` promise: `mypy --strict` passes on it
/// and on a user's module (`python/tests/typed_usage.py`) whose task types
/// flow through `delay()` and `get()`.
#[test]
fn the_package_type_checks() {
    let staged = tempfile::tempdir().expect("tempdir");
    let root = stage(staged.path());
    let out = Command::new(python())
        .args([
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir=/dev/null",
        ])
        .arg(root.join("conveyor"))
        .arg(package_source().join("tests").join("typed_usage.py"))
        .env("MYPYPATH", &root)
        .current_dir(staged.path())
        .output()
        .expect("run mypy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mypy --strict:\n{text}");
}
