//! What survives losing a process of the embedded store
//! (`docs/high-availability.md`): the file is the store, on one machine.

use conveyor_core::FailoverMode;

/// A process killed mid-run: the file's transactions keep everything
/// committed (`conveyor-cli`'s `tests/crash.rs` and `tests/multiprocess.rs`
/// SIGKILL workers sharing a file).
pub const FAILOVER: &[FailoverMode] = &[FailoverMode::keeping_all("one file, process killed")];
