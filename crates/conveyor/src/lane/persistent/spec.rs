//! What a persistent handler runs: the program, and how its children are
//! pooled and recycled.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

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
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) processes: Option<usize>,
    pub(crate) max_tasks_per_child: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) retire_grace: Duration,
}

impl PersistentProcess {
    /// Runs `program` (looked up on `PATH`), no shell.
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            processes: None,
            max_tasks_per_child: None,
            max_memory: None,
            retire_grace: Duration::from_secs(5),
        }
    }

    /// Adds one argument, passed verbatim.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments, each passed verbatim.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the children.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the children's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

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

    /// The program.
    pub fn program(&self) -> &OsString {
        &self.program
    }

    /// The most children at once, if capped.
    pub fn max_processes(&self) -> Option<usize> {
        self.processes
    }
}
