//! Where a handler runs: the three lanes of the engine.

use std::fmt;

/// The lane a handler runs in. Each lane has its own concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Async work on the tokio runtime: network calls, timers, anything that awaits.
    Io,
    /// CPU-heavy work on a bounded pool of OS threads sized to the cores, so the
    /// async runtime is never stalled by it.
    Cpu,
    /// A child process: isolation, external commands, killable on timeout or cancel.
    Process,
}

impl Lane {
    /// All lanes, in index order.
    pub const ALL: [Lane; 3] = [Lane::Io, Lane::Cpu, Lane::Process];

    /// A stable small index (0, 1, 2) for per-lane arrays.
    pub fn index(self) -> usize {
        match self {
            Lane::Io => 0,
            Lane::Cpu => 1,
            Lane::Process => 2,
        }
    }

    /// The lane's lowercase name: `io`, `cpu` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Io => "io",
            Lane::Cpu => "cpu",
            Lane::Process => "process",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
