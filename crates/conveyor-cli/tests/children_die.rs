//! A worker killed with SIGKILL leaves no child process alive: neither the
//! handler processes it started nor what they started in turn (a shell's
//! background job). Each task is `sh -c 'sleep 300 & …; wait'` and writes
//! the shell's pid and its background sleep's pid to a file; once both tasks
//! have written theirs, the worker gets SIGKILL and every recorded pid must
//! disappear.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use conveyor_testkit::process::{pid_alive, wait_all_gone, Proc};

/// Waits until `path` holds two pids; returns them.
fn pids_in(path: &std::path::Path, limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let pids: Vec<u32> = text
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if pids.len() == 2 && text.ends_with('\n') {
                return pids;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_of_the_worker_kills_its_children_and_grandchildren() {
    let env = Env::new();
    let dir = env.path("pids");
    std::fs::create_dir(&dir).expect("mkdir");
    let script = format!(
        "sleep 300 & echo $$ $! > '{d}/'\"$1\".tmp && mv '{d}/'\"$1\".tmp '{d}/'\"$1\"; wait",
        d = dir.display()
    );
    let cfg = env.config(&format!(
        "[worker]\nslots = 2\npoll = \"20ms\"\n\
         [handlers.hold]\nprogram = \"sh\"\nargs = [\"-c\", {script:?}, \"_\", \"{{n}}\"]\n"
    ));
    let cfg = cfg.to_string_lossy().into_owned();
    for n in 0..2 {
        let out = env.run(&["submit", "hold", &format!("{{\"n\": {n}}}")]);
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let mut worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    let mut pids = Vec::new();
    for n in 0..2 {
        pids.extend(pids_in(&dir.join(n.to_string()), Duration::from_secs(30)));
    }
    assert!(pids.iter().all(|p| pid_alive(*p)), "the children run");
    worker.kill9();
    let alive = wait_all_gone(&pids, Duration::from_secs(20));
    assert!(alive.is_empty(), "children outlived the worker: {alive:?}");
}
