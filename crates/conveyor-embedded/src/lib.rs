//! conveyor's zero-setup durable backend: one local SQLite file in WAL mode.
//!
//! [`EmbeddedBackend`] implements the [`Backend`](conveyor_core::Backend)
//! contract on a single file (by default [`DEFAULT_PATH`]) through `rusqlite`
//! with SQLite compiled in, so a fresh machine needs nothing installed. Every
//! commit is fsynced (`synchronous=FULL`): a task acknowledged as enqueued
//! survives a crash of the process or the machine. Several processes on one
//! machine may share the file.
//!
//! All SQLite work runs on one dedicated thread per backend, which batches the
//! requests waiting for it into one transaction (group commit), so concurrent
//! callers share fsyncs. See `docs/embedded.md` for the design and figures.
//!
//! Modules: `backend` (the public handle and the trait implementation),
//! `db_thread` (the thread and group commit), `process` (what this
//! process's handles share: the finish board of each file, the database
//! threads), `fork` (pausing those threads around a fork), `store` (each
//! operation as SQL, a file per duty), `row` (rows read back, checked),
//! `error` (SQLite failures as the crate's error),
//! `limits` (global handler limits and the admission state of a reservation),
//! `queue_control` (paused queues),
//! `sql` (the statement texts, built from the core state machine) and `schema`
//! (opening the file, pragmas, table, indexes, versioning) and `scheme` (its
//! URL, `embedded://PATH` or a bare path, for [`SCHEME`]).

mod backend;
mod db_thread;
mod error;
mod failover;
pub mod fork;
mod held_names;
mod inspect;
mod limits;
mod process;
mod queue_control;
mod registry;
mod row;
mod schema;
mod scheme;
mod sql;
mod store;
mod tally;
mod value_limit;

pub use backend::{EmbeddedBackend, DEFAULT_PATH, DEFAULT_RESULTS_POLL};
pub use failover::FAILOVER;
pub use scheme::SCHEME;
