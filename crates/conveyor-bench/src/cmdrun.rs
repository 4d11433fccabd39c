//! `conveyor run` against `xargs -P` and GNU parallel: the same items, the same
//! command, the same parallelism, wall time of the whole command.
//!
//! Workloads: 10,000 items running `true` (spawn overhead) and 2,000 running
//! `sleep 0.05` (scheduling), each at `-j 8` and `-j 64`; conveyor without and
//! with `--state` (every outcome fsynced to the state file). Runs of the fast
//! subjects are interleaved and repeated, and the median is kept. Needs the
//! release `conveyor` binary beside this one (`cargo build --release -p
//! conveyor-cli`) and, for its baseline, GNU parallel (Debian package `parallel`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::report::Report;

/// One workload.
struct Workload {
    name: &'static str,
    items: usize,
    item: &'static str,
    program: &'static str,
}

/// Runs the comparison.
pub fn run(report: &mut Report, quick: bool) {
    let Some(conveyor) = conveyor_binary() else {
        report.note("no conveyor binary beside conveyor-bench: run `cargo build --release -p conveyor-cli` first");
        return;
    };
    let have_parallel = Command::new("parallel")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_parallel {
        report.note("GNU parallel not found (Debian package `parallel`): its rows are skipped");
    }
    let scale = if quick { 5 } else { 1 };
    let reps = if quick { 1 } else { 3 };
    let workloads = [
        Workload {
            name: "true",
            items: 10_000 / scale,
            item: "x",
            program: "true",
        },
        Workload {
            name: "sleep 0.05",
            items: 2_000 / scale,
            item: "0.05",
            program: "sleep",
        },
    ];
    let dir = std::env::temp_dir().join(format!("conveyor-bench-run-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        report.note(format!("cannot create {}: {e}", dir.display()));
        return;
    }
    for w in &workloads {
        let input = dir.join(format!("items-{}", w.program));
        let text: String = std::iter::repeat_n(format!("{}\n", w.item), w.items).collect();
        if let Err(e) = std::fs::write(&input, text) {
            report.note(format!("cannot write {}: {e}", input.display()));
            return;
        }
        for jobs in [8usize, 64] {
            let bench = format!("run {} x{} -j{jobs}", w.name, w.items);
            let j = jobs.to_string();
            let xargs = || {
                let mut c = Command::new("xargs");
                c.args(["-P", &j, "-n", "1", w.program]);
                c
            };
            let plain = || {
                let mut c = Command::new(&conveyor);
                c.args(["run", "-q", "-j", &j, "--", w.program]);
                c
            };
            let mut state_n = 0;
            let mut with_state = || {
                state_n += 1;
                let state = dir.join(format!("state-{}-{jobs}-{state_n}.db", w.program));
                let mut c = Command::new(&conveyor);
                c.args(["run", "-q", "-j", &j, "--state"])
                    .arg(&state)
                    .args(["--", w.program]);
                c
            };
            let mut t_xargs = Vec::new();
            let mut t_plain = Vec::new();
            let mut t_state = Vec::new();
            for _ in 0..reps {
                t_xargs.push(time(xargs(), &input));
                t_plain.push(time(plain(), &input));
                t_state.push(time(with_state(), &input));
            }
            let (x, p, s) = (median(t_xargs), median(t_plain), median(t_state));
            let (Some(x), Some(p), Some(s)) = (x, p, s) else {
                report.note(format!("{bench}: a subject failed; no figures"));
                continue;
            };
            report.add(&bench, "xargs -P", x, "s");
            report.add_vs(&bench, "conveyor run", p, "s", "xargs (time ratio)", p / x);
            report.add_vs(
                &bench,
                "conveyor run --state",
                s,
                "s",
                "xargs (time ratio)",
                s / x,
            );
            if have_parallel {
                let mut c = Command::new("parallel");
                c.args(["-j", &j, w.program]);
                if let Some(g) = time(c, &input) {
                    report.add_vs(
                        &bench,
                        "GNU parallel",
                        g,
                        "s",
                        "conveyor run (time ratio)",
                        g / p,
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `conveyor` binary in the same directory as this one.
pub(crate) fn conveyor_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.join("conveyor");
    bin.exists().then_some(bin)
}

/// Wall time of `cmd` reading `input`, or `None` if it failed.
fn time(mut cmd: Command, input: &Path) -> Option<f64> {
    let stdin = std::fs::File::open(input).ok()?;
    cmd.stdin(stdin).stdout(Stdio::null()).stderr(Stdio::null());
    let t = Instant::now();
    let status = cmd.status().ok()?;
    let took = t.elapsed().as_secs_f64();
    status.success().then_some(took)
}

/// The median of the runs, if every one of them ran.
fn median(v: Vec<Option<f64>>) -> Option<f64> {
    let all: Option<Vec<f64>> = v.into_iter().collect();
    all.map(|v| crate::report::median(&v))
}
