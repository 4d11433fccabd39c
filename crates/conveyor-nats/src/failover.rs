//! What survives losing the NATS server (`docs/high-availability.md`).

use conveyor_core::{FailoverMode, Kept};

/// One server restarted on its file streams is tested by the fault suite;
/// a cluster with R3 streams is not tested yet, so claims nothing.
pub const FAILOVER: &[FailoverMode] = &[
    FailoverMode {
        key_order: Kept::Absent,
        global_limits: Kept::Absent,
        ..FailoverMode::keeping_all("one server, restarted")
    },
    FailoverMode::untested("3-node cluster, R3 streams"),
];
