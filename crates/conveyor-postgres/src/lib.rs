//! The PostgreSQL backend of conveyor: durable task queues in a schema of your
//! own database.
//!
//! [`PostgresBackend`] implements [`conveyor_core::Backend`] on one table per
//! schema (default `conveyor`), created and migrated by [`PostgresBackend::migrate`]
//! (run on connect unless turned off). Workers reserve with `SELECT … FOR NO KEY
//! UPDATE SKIP LOCKED`, so any number of them, in any number of processes, share
//! a queue without waiting on each other; every batch call is one statement over
//! arrays. Producers can enqueue inside their own transaction with
//! [`PostgresBackend::enqueue_in`], so a task exists only if the business change
//! that caused it commits. LISTEN/NOTIFY wakes idle workers early; polling keeps
//! working without it. The maintenance call `recover_expired` also vacuums the
//! table when reservations have left enough dead rows, which keeps reserving
//! fast under sustained load.
//!
//! ```no_run
//! # async fn demo() -> Result<(), conveyor_core::Error> {
//! use conveyor_core::{Backend, NewTask};
//! use conveyor_postgres::PostgresBackend;
//!
//! let backend = PostgresBackend::connect("postgres://postgres@127.0.0.1/app").await?;
//! backend.enqueue(NewTask::new("email", b"{}".to_vec())).await?;
//! # Ok(()) }
//! ```
//!
//! [`SCHEME`] opens it from a URL, `postgres://USER@HOST/DB?schema=S`. See
//! `docs/postgres.md` for the schema, the queries and measured throughput.

mod backend;
mod builder;
mod counts;
mod enqueue;
mod error;
mod failover;
mod inspect;
mod limits;
mod listener;
mod migrate;
mod notifier;
mod read_only;
mod row;
mod schedules;
mod schema;
mod scheme;
mod statements;
mod tls;
mod vacuum;
mod value_limit;
mod workflows;

pub use backend::PostgresBackend;
pub use builder::{Builder, DEFAULT_POOL_SIZE, DEFAULT_VACUUM_EVERY};
pub use failover::FAILOVER;
pub use migrate::{Migrated, SCHEMA_VERSION};
pub use schema::DEFAULT_SCHEMA;
pub use scheme::SCHEME;

/// Re-exported so callers of [`PostgresBackend::enqueue_in`] name the same
/// driver types (`Transaction`, `Client`, `GenericClient`).
pub use tokio_postgres;
