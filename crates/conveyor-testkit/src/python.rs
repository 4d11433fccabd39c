//! A Python with the packages a test needs: a virtualenv of its own, made on
//! first use (`python3 -m venv`, then pip from the package registry) and
//! kept in the temporary directory for later runs, as the Kafka test broker
//! is built once. Tests that check conveyor against a real peer — a
//! Prometheus text parser, an OpenAPI fuzzer — run it through this.
//!
//! Several test processes may ask at once: each builds in a directory of its
//! own and renames it into place, so a half-made virtualenv is never used;
//! the threads of one process take turns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A virtualenv named `name` holding `packages` (pip requirement strings),
/// checked by importing `imports`; the path of its `python`.
pub fn venv(name: &str, packages: &[&str], imports: &[&str]) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join("conveyor-test-venvs").join(name);
    venv_at(&dir, packages, imports)
}

/// [`venv`], in the directory `dir` (made when it holds no virtualenv that
/// imports `imports`).
pub fn venv_at(dir: &Path, packages: &[&str], imports: &[&str]) -> Result<PathBuf, String> {
    let python = dir.join("bin").join("python");
    if can_import(&python, imports) {
        return Ok(python);
    }
    // Tests of one binary run on threads of one process: one builds while
    // the others wait, then find it made (the building directory is named
    // by process, so two threads must not share it).
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if can_import(&python, imports) {
        return Ok(python);
    }
    let root = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map_or_else(|| "venv".into(), |n| n.to_string_lossy());
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let building = root.join(format!("{name}.{}.building", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    run(Command::new("python3").arg("-m").arg("venv").arg(&building))?;
    run(Command::new(building.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages))?;
    // Python finds a virtualenv from where its `python` is, so a moved one
    // works (only its `bin/` scripts' first lines name the old place, and
    // they are not used). Another process may have put one in place first:
    // then this one is dropped.
    if std::fs::rename(&building, dir).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    if can_import(&python, imports) {
        Ok(python)
    } else {
        Err(format!("{} cannot import {imports:?}", python.display()))
    }
}

/// A command running the console script `name` a package installed in the
/// virtualenv of `python` (its entry point, run by that `python`: the
/// script files in `bin/` name the directory the virtualenv was made in).
pub fn script(python: &Path, name: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(format!(
        "import sys\n\
             from importlib.metadata import entry_points\n\
             [ep] = [e for e in entry_points(group='console_scripts') if e.name == '{name}']\n\
             sys.argv[0] = '{name}'\n\
             sys.exit(ep.load()())"
    ));
    cmd
}

fn can_import(python: &Path, imports: &[&str]) -> bool {
    python.exists()
        && Command::new(python)
            .arg("-c")
            .arg(format!("import {}", imports.join(", ")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    match cmd.stdout(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{shown} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!("cannot run {shown}: {e}")),
    }
}

/// The repository's Python package (`python/`: its sources, tests and
/// `pyproject.toml`).
pub fn package_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python")
}

/// The native extension cargo built (`libconveyor_python.so` on Linux), in
/// the first of `dirs` that holds it.
pub fn extension_in(dirs: &[&Path]) -> Option<PathBuf> {
    let name = format!(
        "{}conveyor_python{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    dirs.iter().map(|d| d.join(&name)).find(|lib| lib.exists())
}

/// The package as Python imports it, made in `dir` without pip or maturin:
/// `dir/conveyor/` holds the package's sources and `extension` renamed
/// `_native.abi3.so`. Put `dir` on `PYTHONPATH`.
pub fn stage_package(dir: &Path, extension: &Path) -> Result<(), String> {
    let src = package_source().join("conveyor");
    let pkg = dir.join("conveyor");
    std::fs::create_dir_all(&pkg).map_err(|e| format!("{}: {e}", pkg.display()))?;
    let entries = std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", src.display()))?.path();
        if let (true, Some(name)) = (path.is_file(), path.file_name()) {
            std::fs::copy(&path, pkg.join(name))
                .map_err(|e| format!("copy {}: {e}", path.display()))?;
        }
    }
    std::fs::copy(extension, pkg.join("_native.abi3.so"))
        .map_err(|e| format!("copy {}: {e}", extension.display()))?;
    Ok(())
}
