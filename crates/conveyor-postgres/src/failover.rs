//! What survives losing the PostgreSQL primary (`docs/high-availability.md`):
//! every guarantee lives in the tables, which a restart or a synchronous
//! standby keeps whole; an asynchronous standby may lack the last commits.

use conveyor_core::{FailoverMode, Kept};

/// The modes tested (`tests/restart.rs`, `tests/failover.rs`,
/// `tests/conformance_standby.rs`).
pub const FAILOVER: &[FailoverMode] = &[
    FailoverMode::keeping_all("one server, restarted"),
    FailoverMode::keeping_all("synchronous standby, promoted"),
    FailoverMode {
        // The commits the standby had not received are gone: enqueues,
        // delays and leader terms with them (two leaders for at most the
        // second before the old one asks again). Tokens are drawn at
        // random, so a lost reservation's worker is still fenced.
        acknowledged_enqueues: Kept::Lost,
        delayed_tasks: Kept::Lost,
        one_leader: Kept::Lost,
        ..FailoverMode::keeping_all("asynchronous standby, promoted")
    },
];
