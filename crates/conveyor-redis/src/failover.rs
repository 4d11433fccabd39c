//! What survives losing the Redis server (`docs/high-availability.md`).

use conveyor_core::FailoverMode;

/// One server restarted on its append-only file (`appendfsync always`) is
/// tested by the fault suite; a promoted replica and Redis Cluster are not
/// supported yet, so claim nothing.
pub const FAILOVER: &[FailoverMode] = &[
    FailoverMode::keeping_all("one server, restarted"),
    FailoverMode::untested("replica promoted by Sentinel"),
    FailoverMode::untested("Redis Cluster"),
];
