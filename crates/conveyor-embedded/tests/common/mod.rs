//! Helpers shared by the embedded backend's tests: a backend on a fresh file in
//! a temporary directory, on a hand-moved clock.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, ManualClock, NewTask, ReserveParams, Reserved};
use conveyor_embedded::EmbeddedBackend;
use tempfile::TempDir;

/// A backend on a new file, the directory that holds it and its clock.
pub struct Fixture {
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub backend: EmbeddedBackend,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::default());
        let backend =
            EmbeddedBackend::open_with_clock(dir.path().join("tasks.db"), clock.clone()).unwrap();
        Fixture {
            dir,
            clock,
            backend,
        }
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("tasks.db")
    }

    /// Another backend on the same file and clock.
    pub fn reopen(&self) -> EmbeddedBackend {
        EmbeddedBackend::open_with_clock(self.path(), self.clock.clone()).unwrap()
    }

    pub async fn enqueue(&self, task: NewTask) -> conveyor_core::TaskId {
        self.backend.enqueue(task).await.unwrap().id
    }

    pub async fn reserve(&self, queue: &str, max: usize) -> Vec<Reserved> {
        self.backend
            .reserve(ReserveParams::new(&[queue.to_string()], max, LEASE))
            .await
            .unwrap()
    }
}

pub const LEASE: Duration = Duration::from_secs(30);

pub fn task(handler: &str) -> NewTask {
    NewTask::new(handler, handler.as_bytes().to_vec())
}

pub fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}
