//! The identity and per-task options of a task.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A task's identity, unique within the process (in-process engine) or within a
/// backend (durable queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

impl TaskId {
    /// A fresh id from a process-wide counter, starting at 1.
    pub fn next() -> TaskId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TaskId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Options of one task. Every field is optional; unset fields fall back to the
/// handler's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOptions {
    /// Ordering key: tasks with the same key never run at the same time and start
    /// in submission order; tasks with different keys run in parallel.
    pub ordering_key: Option<Arc<str>>,
    /// Time limit of one attempt; overrides the handler's timeout.
    pub timeout: Option<Duration>,
    /// Total attempts allowed (1 = no retry); overrides the handler's retry policy.
    pub max_attempts: Option<u32>,
    /// Do not start the task before this much time has passed since submission.
    pub delay: Option<Duration>,
}

impl TaskOptions {
    /// Options with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the ordering key (the same word as a durable task's
    /// `ordering_key`).
    pub fn ordering_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the total number of attempts (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Delays the first start.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}
