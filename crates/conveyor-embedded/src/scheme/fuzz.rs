//! Fuzz test (proptest, stable Rust) of this backend's URL parser: any
//! text, URL-shaped text and URL-shaped text mutated is refused with an
//! error or read, never a panic. A CI run is a few hundred cases;
//! `CONVEYOR_FUZZ_SECS=N` runs it for N seconds instead (docs/fuzzing.md).

use conveyor_testkit::fuzz::{fuzz, url_input_for};

#[test]
fn fuzz_url() {
    fuzz(
        "embedded url",
        2_000,
        url_input_for(&["embedded", "sqlite", "file", "memory"]),
        |url| {
            let _ = super::target_of(&url);
            Ok(())
        },
    );
}
