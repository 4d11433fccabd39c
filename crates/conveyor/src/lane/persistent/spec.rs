//! What a persistent handler runs: the program, and how its children are
//! pooled and recycled.

use std::ffi::OsString;
use std::time::Duration;

use crate::lane::command::{child_command_methods, ChildCommand};

/// A long-lived child program that runs tasks one at a time over the
/// [protocol](super::protocol), for [`Handler::persistent`](crate::Handler::persistent).
///
/// Children start on demand, up to [`PersistentProcess::processes`] at once
/// (without it, as many as the handler's and the lane's limits let run), and
/// are kept for the next task. One that crashes mid-task, hangs past the
/// attempt's timeout or sends a broken reply is killed (its whole process
/// group) and replaced; the task is retried by its handler's policy. Repeated
/// crashes space out the restarts (100 ms doubling to 10 s, reset by the next
/// success). [`max_tasks_per_child`](PersistentProcess::max_tasks_per_child)
/// and [`max_memory`](PersistentProcess::max_memory) recycle leaky children
/// between tasks. Each stderr line goes to the log (`tracing`, target
/// `conveyor::handler`), tagged with the handler and the running task.
#[derive(Debug, Clone)]
pub struct PersistentProcess {
    pub(crate) command: ChildCommand,
    pub(crate) processes: Option<usize>,
    pub(crate) max_tasks_per_child: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) retire_grace: Duration,
}

impl PersistentProcess {
    /// Runs `program` (looked up on `PATH`), no shell.
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            command: ChildCommand::new(program),
            processes: None,
            max_tasks_per_child: None,
            max_memory: None,
            retire_grace: Duration::from_secs(5),
        }
    }

    child_command_methods!("the children", "the children's");

    /// At most `n` children at once (at least 1). Tasks beyond them wait for
    /// one to be free.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n.max(1));
        self
    }

    /// Replaces a child after it has run `n` tasks (at least 1).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// Replaces a child whose resident memory exceeds `bytes` after a task
    /// (read from `/proc`; Linux only, ignored elsewhere).
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// How long a retired child gets to exit after its stdin closes before
    /// its process group is killed (default 5 s).
    pub fn retire_grace(mut self, grace: Duration) -> Self {
        self.retire_grace = grace;
        self
    }

    /// The most children at once, if capped.
    pub fn max_processes(&self) -> Option<usize> {
        self.processes
    }
}
