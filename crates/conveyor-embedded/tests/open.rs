//! Opening one file from many connections at once: every opener succeeds.

use std::sync::{Arc, Barrier};
use std::thread;

use conveyor_embedded::EmbeddedBackend;

/// Several workers and submitters started together all open a new file at
/// once; none may fail with "database is locked" (SQLite answers a WAL switch
/// that races another with `SQLITE_BUSY` without calling the busy handler).
#[test]
fn concurrent_opens_of_a_new_file_all_succeed() {
    const ROUNDS: usize = 40;
    const OPENERS: usize = 6;
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..ROUNDS {
        let path = dir.path().join(format!("q{round}.db"));
        let barrier = Arc::new(Barrier::new(OPENERS));
        let openers: Vec<_> = (0..OPENERS)
            .map(|_| {
                let (path, barrier) = (path.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    EmbeddedBackend::open(&path).map(drop)
                })
            })
            .collect();
        for opener in openers {
            let opened = opener.join().expect("opener thread");
            if let Err(e) = opened {
                panic!("round {round}: {e}");
            }
        }
    }
}
