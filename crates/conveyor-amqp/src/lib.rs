//! A RabbitMQ backend for conveyor's durable task queues.
//!
//! Tasks wait in **quorum queues** (`P.q.QUEUE`), are published with
//! **publisher confirms** (an enqueue returns once the broker has them), and
//! are consumed with a prefetch no larger than the worker's free slots, so
//! backpressure reaches the broker. A worker settles a report — the ack, a
//! retry's copy, a dead letter, follow-up tasks — in one AMQP transaction on
//! the channel that delivered the task: a worker whose channel died (its
//! connection dropped, or the broker closed it) can settle nothing, and its
//! tasks run again elsewhere (at-least-once, fenced by the broker).
//!
//! Delays and retries with backoff go through a ladder of TTL queues
//! (`delay`), no plugin needed; long tasks move to custody queues before the
//! server's `consumer_timeout` could close their channel (`custody`); a task
//! whose deliveries keep ending without a report (its worker is killed, again
//! and again) is dead-lettered by the broker after `delivery_limit`.
//!
//! RabbitMQ keeps messages, not task records: results need a store beside
//! it that keeps them (any backend with the record keeper part, such as
//! Redis: `results=redis://…` through conveyor's scheme registry, or
//! [`AmqpBackend::connect_keeping`]; as Celery separates broker and result
//! backend);
//! there is no listing, no unique or ordering keys and no priorities here,
//! and each is refused with [`conveyor_core::Error::Unsupported`] rather than
//! ignored.
//! `docs/amqp.md` has the whole design.
//!
//! ```no_run
//! # async fn demo() -> Result<(), conveyor_core::Error> {
//! use std::sync::Arc;
//! use conveyor_amqp::{AmqpBackend, AmqpOptions};
//! use conveyor_core::{Backend, NewTask, SystemClock};
//!
//! let backend = AmqpBackend::connect(
//!     "amqp://guest:guest@127.0.0.1:5672/%2f",
//!     AmqpOptions::default(),
//!     Arc::new(SystemClock),
//! )
//! .await?;
//! backend.enqueue(NewTask::new("email", b"{}".to_vec())).await?;
//! # Ok(()) }
//! ```

mod answer;
mod backend;
mod claims;
mod consumer;
mod custody;
mod delay;
mod error;
mod failover;
#[cfg(test)]
mod fuzz;
mod hooks;
mod link;
mod message;
mod names;
mod nodes;
mod options;
mod records;
mod scheme;
mod topology;
mod value_limit;
mod workflows;

pub use backend::AmqpBackend;
pub use failover::FAILOVER;
#[cfg(feature = "test-hooks")]
pub use hooks::{Hook, Pause, Point};
pub use names::{MAX_PREFIX, MAX_QUEUE_NAME};
pub use options::{AmqpOptions, DEFAULT_DELIVERY_LIMIT, DEFAULT_HOLD, DEFAULT_PREFIX};
pub use scheme::SCHEME;
