//! Sources and the one runner that executes their tasks.
//!
//! A **source** is anything that feeds tasks and takes their outcomes back: a
//! durable backend, a message broker, a stream. The [`Runner`] is the executor
//! around any of them, written once: it fetches only as many tasks as it has
//! free slots (backpressure reaches the source), runs them on the engine's
//! lanes and limits under the source's own ids, decides each task's next step
//! from its outcome with the one decision function
//! ([`next_step`](conveyor_core::next_step)), settles in batches, keeps leases
//! alive, and drains on stop. User callbacks run off the settlement path.
//!
//! To add a source, implement [`Source`]: `fetch`, `settle`, and where the
//! source has leases, `lease` and `renew`.

mod callbacks;
mod contract;
mod control;
mod fetcher;
mod held;
mod lease_keeper;
mod routes;
mod runner;
mod runner_state;
mod settle_watch;
mod settler;
mod sink;
mod slots;
mod stats;
mod ticker;

pub use callbacks::{CallbackQueue, OnSettled, Settled, Stored, DEFAULT_CALLBACK_CAPACITY};
pub use contract::{Delivery, Retries, Settlement, Source};
pub use control::Control;
pub use routes::Routes;
pub use runner::{
    Runner, RunnerHandle, RunnerReport, DEFAULT_FETCH_BATCH, DEFAULT_GRACE, DEFAULT_HEARTBEAT,
    DEFAULT_POLL, WRAP_UP,
};
pub use stats::RunnerStats;
