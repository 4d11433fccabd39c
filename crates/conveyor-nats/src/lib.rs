//! A NATS JetStream backend for conveyor's durable task queues.
//!
//! [`NatsBackend`] implements [`conveyor_core::Backend`] with JetStream
//! doing the delivering and a key-value ledger doing the deciding:
//!
//! - a **work-queue stream** (`<P>_ready`) holds one message per task that
//!   may run, on a subject per queue and priority, each read by one shared
//!   durable pull consumer; an unacked message is the broker's half of a
//!   lease, and its `AckWait` the backstop that redelivers what a vanished
//!   worker held;
//! - a **key-value bucket** (`<P>_tasks`) holds a record per task, changed
//!   only by compare-and-set: it is what fences a stale worker (JetStream
//!   acks by stream sequence alone, so a worker whose lease ran out could
//!   otherwise settle a redelivery someone else runs), and it keeps results,
//!   unique keys, leadership, heartbeats and the paused queues (read once
//!   by every `reserve`, before it fetches);
//! - a **schedule stream** (`<P>_sched`) holds delayed and backed-off tasks
//!   by the second they are due, promoted on conveyor's clock by `reserve`,
//!   so delays work on NATS 2.9 (no per-message TTL or scheduling needed)
//!   and never hold a consumer's `MaxAckPending`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), conveyor_core::Error> {
//! use conveyor_core::{Backend, NewTask};
//! use conveyor_nats::NatsBackend;
//!
//! let backend = NatsBackend::connect("nats://127.0.0.1:4222").await?;
//! let queued = backend.enqueue(NewTask::new("email", b"{}".to_vec())).await?;
//! println!("task {}", queued.id);
//! # Ok(()) }
//! ```
//!
//! Ordering keys and global handler limits are not offered (see
//! `docs/nats.md` for why, and for the design, costs and guarantees).

mod admin;
mod backend;
mod body;
mod bounds;
mod due;
mod enqueue;
mod error;
mod failover;
mod finish;
mod inspection;
mod ledger;
mod limits;
mod maintenance;
mod names;
mod priorities;
mod queue_control;
mod record;
mod record_cache;
mod registry;
mod reserve;
mod schedule;
mod schedules;
mod scheme;
mod stored;
mod streams;
mod wakeups;
mod wire;
mod workflows;

pub use backend::{NatsBackend, NatsOptions};
pub use failover::FAILOVER;
pub use names::DEFAULT_PREFIX;
pub use scheme::SCHEME;
