//! What survives losing the Redis primary (`docs/high-availability.md`):
//! every guarantee lives in the namespace's keys, which a restart on an
//! append-only file or a replica that confirmed every write (`replicas=1`)
//! keeps whole; an asynchronous replica may lack the last writes.

use conveyor_core::{FailoverMode, Kept};

/// The modes tested (`tests/restart.rs`, `tests/failover.rs`,
/// `tests/conformance_sentinel.rs`, `tests/cluster.rs`,
/// `tests/conformance_cluster.rs`).
pub const FAILOVER: &[FailoverMode] = &[
    FailoverMode::keeping_all("one server, restarted"),
    FailoverMode::keeping_all("replica promoted by Sentinel, writes confirmed by it"),
    FailoverMode {
        // The writes the replica had not received are gone: enqueues,
        // delays and leader terms with them (two leaders for at most the
        // second before the old one asks again). Tokens move past the
        // server's clock, so a lost reservation's worker is still fenced.
        acknowledged_enqueues: Kept::Lost,
        delayed_tasks: Kept::Lost,
        one_leader: Kept::Lost,
        ..FailoverMode::keeping_all("replica promoted by Sentinel, asynchronous")
    },
    FailoverMode::keeping_all("Redis Cluster, writes confirmed by a replica"),
    FailoverMode {
        // As with Sentinel: a replica promoted without the last writes.
        acknowledged_enqueues: Kept::Lost,
        delayed_tasks: Kept::Lost,
        one_leader: Kept::Lost,
        ..FailoverMode::keeping_all("Redis Cluster, asynchronous")
    },
];
