//! What survives losing a NATS server (`docs/high-availability.md`).

use conveyor_core::{FailoverMode, Kept};

/// One server restarted on its file streams (`tests/restart.rs`, the fault
/// suite), and a 3-server cluster with every stream kept by all three
/// (`replicas=3`; `tests/failover.rs`, `tests/conformance_cluster.rs`):
/// JetStream acknowledges a write once most replicas stored it, and a new
/// leader is elected among them, so a leader's death loses nothing
/// acknowledged. Neither has ordering keys or global limits.
pub const FAILOVER: &[FailoverMode] = &[
    FailoverMode {
        key_order: Kept::Absent,
        global_limits: Kept::Absent,
        ..FailoverMode::keeping_all("one server, restarted")
    },
    FailoverMode {
        key_order: Kept::Absent,
        global_limits: Kept::Absent,
        ..FailoverMode::keeping_all("3-node cluster, R3 streams")
    },
];
