//! The Python package staged for a test: its sources and the extension
//! cargo built for this run (a dev-dependency), as Python loads them.

use std::path::{Path, PathBuf};

/// The repository's `python/` folder.
pub fn package_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python")
}

/// The extension cargo built for this test run (a dev-dependency): beside
/// this test binary, in `target/…/deps`.
pub fn extension() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the deps folder");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        let lib = dir.join(format!(
            "{}conveyor_python{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        if lib.exists() {
            return lib;
        }
    }
    panic!(
        "the extension libconveyor_python was not built beside {}",
        deps.display()
    );
}

/// Copies the package with its native module into `dir`.
pub fn stage(dir: &Path) -> PathBuf {
    let src = package_source().join("conveyor");
    let dst = dir.join("conveyor");
    std::fs::create_dir_all(&dst).expect("make the package folder");
    for entry in std::fs::read_dir(&src).expect("read python/conveyor") {
        let path = entry.expect("an entry").path();
        if path.is_file() {
            std::fs::copy(&path, dst.join(path.file_name().expect("a name"))).expect("copy");
        }
    }
    std::fs::copy(extension(), dst.join("_native.abi3.so")).expect("copy the extension");
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
