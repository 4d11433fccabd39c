//! The fault suite (`conveyor_testkit::faults`) on the embedded store: a
//! SQLite file in the worker's own process has no server to restart and no
//! network to break, so those cases do not apply (each is listed, ignored
//! with its reason); a rolling deploy does. A worker SIGKILLed or paused
//! past its lease on a shared file is `conveyor-cli`'s `tests/multiprocess.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_testkit::faults::{FaultServer, FaultTarget};

fn target() -> FaultTarget {
    FaultTarget {
        name: "embedded",
        // No server: the address is never dialled by the cases run here.
        service: SocketAddr::from(([127, 0, 0, 1], 9)),
        url: |_, ns, _| format!("embedded://{}", path(ns).display()),
        scheme: conveyor_embedded::SCHEME,
        keeper: None,
        private_server: || None::<Box<dyn FaultServer>>,
        lease: Duration::from_secs(2),
        forget,
        prefetch: false,
    }
}

/// The case's store file.
fn path(ns: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("conveyor-faults-{ns}.db"))
}

/// Deletes the case's file and its write-ahead log.
fn forget(ns: &str) {
    let db = path(ns);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

conveyor_testkit::backend_faults!(@cases target(); rolling_deploy);

const NO_SERVER: &str = "no server: the store is a file inside the worker's process";

#[test]
#[ignore = "no server: the store is a file inside the worker's process"]
fn restart_mid_run() {
    panic!("{NO_SERVER}");
}

#[test]
#[ignore = "no network: the store is a file inside the worker's process"]
fn blackhole_mid_run() {
    panic!("{NO_SERVER}");
}

#[test]
#[ignore = "no network: the store is a file inside the worker's process"]
fn connections_cut_mid_run() {
    panic!("{NO_SERVER}");
}

#[test]
#[ignore = "no network: the store is a file inside the worker's process"]
fn slow_network_mid_run() {
    panic!("{NO_SERVER}");
}

#[test]
#[ignore = "no outage to stop in: the store is a file inside the worker's process"]
fn stop_mid_outage() {
    panic!("{NO_SERVER}");
}
