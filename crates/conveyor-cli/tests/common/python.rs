//! The Python package staged for a test: its sources and the extension
//! cargo built for this run (a dev-dependency), as Python loads them
//! ([`conveyor_testkit::python::stage_package`]).

use std::path::{Path, PathBuf};

/// The extension cargo built for this test run (a dev-dependency): beside
/// this test binary, in `target/…/deps`, or one folder up.
pub fn extension() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the deps folder");
    conveyor_testkit::python::extension_in(&[deps, deps.parent().unwrap_or(deps)]).unwrap_or_else(
        || {
            panic!(
                "the extension libconveyor_python was not built beside {}",
                deps.display()
            )
        },
    )
}

/// Stages the package with its native module in `dir`; returns `dir`.
pub fn stage(dir: &Path) -> PathBuf {
    conveyor_testkit::python::stage_package(dir, &extension()).expect("stage the package");
    dir.to_path_buf()
}

/// A Python with pytest and mypy.
pub fn python() -> PathBuf {
    conveyor_testkit::python::venv(
        "pytest-mypy",
        &["pytest>=8,<9", "mypy>=1.13,<2"],
        &["pytest", "mypy"],
    )
    .expect("a virtualenv with pytest and mypy")
}
