//! What survives losing a store's primary: per way of running the store (one
//! server restarted, a standby promoted, a cluster), whether each of
//! conveyor's guarantees holds across it. A backend declares its modes in
//! [`Capabilities::failover`](super::Capabilities::failover);
//! `docs/high-availability.md` has the same table, and the conformance case
//! `failover_modes_match_the_docs` keeps the two in agreement.

/// Whether a guarantee holds across a mode's failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// It holds, and a test shows it.
    Kept,
    /// It can be broken (the table says how).
    Lost,
    /// The backend does not offer it at all (a broker without ordering
    /// keys).
    Absent,
    /// Not tested in this mode, so not claimed.
    Untested,
}

/// One way of running a store, and what its failover keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverMode {
    /// The mode, as the table names it (`synchronous standby, promoted`).
    pub name: &'static str,
    /// Whether a test runs the store this way (a mode never tested claims
    /// nothing: every guarantee [`Kept::Untested`]).
    pub tested: bool,
    /// A task whose enqueue returned is still there.
    pub acknowledged_enqueues: Kept,
    /// A worker whose claim was lost cannot settle the next attempt.
    pub fencing: Kept,
    /// Tasks of one ordering key run one at a time, in order.
    pub key_order: Kept,
    /// A handler's global concurrency and rate.
    pub global_limits: Kept,
    /// At most one unfinished task per unique key.
    pub unique_keys: Kept,
    /// A delayed task still runs, then.
    pub delayed_tasks: Kept,
    /// One worker at a time does the leader's duties.
    pub one_leader: Kept,
}

impl FailoverMode {
    /// A mode no test runs: nothing claimed.
    pub const fn untested(name: &'static str) -> FailoverMode {
        FailoverMode {
            name,
            tested: false,
            acknowledged_enqueues: Kept::Untested,
            fencing: Kept::Untested,
            key_order: Kept::Untested,
            global_limits: Kept::Untested,
            unique_keys: Kept::Untested,
            delayed_tasks: Kept::Untested,
            one_leader: Kept::Untested,
        }
    }

    /// A tested mode that keeps every guarantee (change the ones it does
    /// not with struct update syntax).
    pub const fn keeping_all(name: &'static str) -> FailoverMode {
        FailoverMode {
            name,
            tested: true,
            acknowledged_enqueues: Kept::Kept,
            fencing: Kept::Kept,
            key_order: Kept::Kept,
            global_limits: Kept::Kept,
            unique_keys: Kept::Kept,
            delayed_tasks: Kept::Kept,
            one_leader: Kept::Kept,
        }
    }

    /// The guarantees with their names, in the table's column order.
    pub fn guarantees(&self) -> [(&'static str, Kept); 7] {
        [
            ("acknowledged enqueues", self.acknowledged_enqueues),
            ("fencing", self.fencing),
            ("per-key order", self.key_order),
            ("global limits", self.global_limits),
            ("unique keys", self.unique_keys),
            ("delayed tasks", self.delayed_tasks),
            ("one leader", self.one_leader),
        ]
    }
}
