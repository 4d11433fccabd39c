//! conveyor's in-process backend: the reference implementation of the durable
//! [`Backend`](conveyor_core::Backend) contract and the test double for code
//! that uses one.
//!
//! [`MemoryBackend`] keeps every task in one mutex-guarded map with small
//! indexes, so each operation is a few ordered-set steps rather than a scan.
//! Nothing survives the process and nothing is shared with another one; use
//! the embedded backend (`conveyor-embedded`) for that. Time comes from an
//! injected [`Clock`](conveyor_core::Clock), so tests move it by hand.
//!
//! Modules: `backend` (the public handle and the trait implementation),
//! `state` (the map, its indexes and the one place tasks change state),
//! `queue_ops` (enqueue, reserve, renew, finish, cancel, lease recovery) and
//! `admin_ops` (lookups, counts, listings, dead-letter admin, pruning, limits)
//! and `scheme` (its URL, `memory://`, for [`SCHEME`]).

mod admin_ops;
mod backend;
mod queue_ops;
mod registry;
mod schedule_ops;
mod scheme;
mod state;
mod workflow_ops;

pub use backend::MemoryBackend;
pub use scheme::SCHEME;
