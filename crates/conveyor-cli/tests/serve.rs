//! `conveyor serve` as a user runs it: the API fuzzed against its own
//! OpenAPI document by schemathesis (from the package registry, in the
//! test's own virtualenv) — no 5xx, every answer as documented, the token
//! enforced — and the listen address checked before anything is served.

mod common;

use std::process::Child;

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
    let token = "fuzz-token";
    let (child, addr) = serve(&env, &["--token", token]);
    let out = conveyor_testkit::python::script(&python, "schemathesis")
        // Its cache and reports go to the test's directory, not the tree.
        .current_dir(env.dir.path())
        .args(["run", &format!("http://{addr}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // Every check; a wait is a long poll and lasts as long as it was
        // asked to (at most 20 s), by design.
        .args(["--checks", "all", "--max-response-time", "30"])
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
    assert!(report.contains("Tested: 15"), "{report}");
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
