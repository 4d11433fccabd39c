//! The Kafka-compatible broker tests run against: `CONVEYOR_KAFKA_BROKERS` if
//! set, else a tansu broker this test binary starts on a free loopback port
//! with its own data directory, and which dies with the test binary.
//!
//! When no tansu binary is found, the first test that needs one installs it
//! with `scripts/kafka-broker.sh install` (a one-time unoptimized build of
//! about five minutes; concurrent test binaries wait on the script's lock), so
//! `cargo test --workspace` needs no step before it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The bootstrap address of the test broker (started on first use).
pub fn brokers() -> &'static str {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS.get_or_init(|| match std::env::var("CONVEYOR_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => b,
        _ => start_tansu(),
    })
}

fn tansu_path() -> PathBuf {
    if let Ok(p) = std::env::var("CONVEYOR_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let cached = home.join("bin").join("tansu");
    if cached.exists() {
        return cached;
    }
    if crate::process::which("tansu").is_some() {
        return PathBuf::from("tansu");
    }
    install_tansu();
    cached
}

/// Builds tansu with the repository's broker script (once per machine).
fn install_tansu() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka-broker.sh");
    eprintln!(
        "tansu (the Kafka-compatible test broker) is not installed: building it once with {} install",
        script.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .arg("install")
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{} install failed ({s})", script.display()),
        Err(e) => panic!("cannot run {}: {e}", script.display()),
    }
}

fn start_tansu() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    sweep_stale_dirs();
    let dir = tempfile::Builder::new()
        .prefix("conveyor-kafka-test-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    let _ = std::fs::write(dir.join("owner.pid"), std::process::id().to_string());
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("broker.log")).expect("broker log file");
    let mut cmd = Command::new(tansu_path());
    cmd.arg("broker")
        .arg("--storage-engine")
        // tansu reads the URL's path as relative: run it inside its directory.
        .arg("sqlite://tansu.db")
        .arg("--listener-url")
        .arg(&url)
        .arg("--advertised-listener-url")
        .arg(&url)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // The broker must not outlive this test binary: it gets SIGKILL when the
    // thread that started it exits, and that thread lives as long as the process.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl only sets a flag of the child; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        let ok = spawned.is_ok();
        let _ = tx.send(spawned.map(|c| c.id()).map_err(|e| e.to_string()));
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    match rx.recv().expect("broker starter thread") {
        Ok(_) => {}
        Err(e) => panic!(
            "could not start tansu ({e}); install it with scripts/kafka-broker.sh install, \
             or set CONVEYOR_KAFKA_BROKERS to a running broker"
        ),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on 127.0.0.1:{port}; see {}",
            dir.join("broker.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    format!("127.0.0.1:{port}")
}

/// Removes the data directories of earlier test runs whose process is gone.
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("conveyor-kafka-test-"));
        if !is_ours {
            continue;
        }
        let owner = std::fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if owner.is_some_and(|pid| !crate::process::pid_alive(pid)) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
