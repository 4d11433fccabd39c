//! What survives losing the RabbitMQ node (`docs/high-availability.md`).

use conveyor_core::{FailoverMode, Kept};

/// One node restarted on its quorum queues is tested by the fault suite, a
/// 3-node cluster losing its work queue's leader by `tests/cluster.rs`
/// (quorum queues confirm a publish once most of their replicas have it).
pub const FAILOVER: &[FailoverMode] = &[
    FailoverMode {
        key_order: Kept::Absent,
        global_limits: Kept::Absent,
        unique_keys: Kept::Absent,
        one_leader: Kept::Absent,
        ..FailoverMode::keeping_all("one node, restarted")
    },
    FailoverMode {
        key_order: Kept::Absent,
        global_limits: Kept::Absent,
        unique_keys: Kept::Absent,
        one_leader: Kept::Absent,
        ..FailoverMode::keeping_all("3-node cluster, quorum queues")
    },
];
