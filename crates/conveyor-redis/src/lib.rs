//! A Redis backend for conveyor's durable task queues.
//!
//! [`RedisBackend`] implements [`conveyor_core::Backend`]: tasks live in
//! two Redis hashes keyed by id (their state and their data) indexed by
//! sorted sets, and every state change is one call of
//! conveyor's Lua code (a function of its library, or a script where the
//! server has no functions: [`ScriptMode`]), so it is atomic across any
//! number of workers sharing the server.
//! Unlike `BRPOP`-style queues, a reserved task stays recorded under a lease:
//! when a worker dies (even with SIGKILL) the lease runs out and
//! [`Maintenance::recover_expired`](conveyor_core::Maintenance::recover_expired) hands
//! the task out again, so nothing is lost.
//!
//! ```no_run
//! # async fn demo() -> Result<(), conveyor_core::Error> {
//! use conveyor_core::{Backend, NewTask};
//! use conveyor_redis::RedisBackend;
//!
//! let backend = RedisBackend::connect("redis://127.0.0.1:6379").await?;
//! let queued = backend.enqueue(NewTask::new("email", b"{}".to_vec())).await?;
//! println!("task {}", queued.id);
//! # Ok(()) }
//! ```
//!
//! Every key lives under a prefix (`conveyor:` unless
//! [`RedisBackend::connect_with`] or the URL's `?prefix=` says otherwise: see
//! [`SCHEME`]); `docs/redis.md` describes the key layout, the scripts, lease
//! recovery, memory bounds and reconnection.

mod backend;
mod calls;
mod cluster;
mod failover;
#[cfg(test)]
mod fuzz_tests;
mod group_enqueue;
mod host_list;
mod kept_entries;
mod keys;
mod limits;
mod packed;
mod primary;
mod queue_control;
mod record_keeper;
mod records;
mod registry;
mod reply;
mod schedules;
mod scheme;
mod scripts;
mod sentinel;
mod state_machine;
mod task_forms;
mod tls;
mod value_limit;
mod wakeups;
mod workflows;

pub use backend::{RedisBackend, MAX_RESERVE};
pub use calls::ScriptMode;
pub use failover::FAILOVER;
pub use keys::DEFAULT_PREFIX;
pub use scheme::SCHEME;
pub use tls::RedisTls;
