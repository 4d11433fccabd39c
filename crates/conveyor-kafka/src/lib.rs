//! Kafka for conveyor: consume topics with bounded parallelism, order where it
//! matters, and no lost messages.
//!
//! A [`KafkaConsumer`] joins a consumer group and runs a conveyor [`Handler`]
//! (any lane: io, cpu or process) on each record:
//!
//! - **Bounded:** at most [`ConsumerConfig::max_in_flight`] messages are in
//!   processing at once, plus at most [`ConsumerConfig::read_ahead`] taken
//!   ahead. At the limit the consumer stops taking records, which the client
//!   keeps prefetched; if it stays there for [`ConsumerConfig::pause_after`],
//!   the assigned partitions are paused (the consumer keeps polling, so it
//!   stays in its group) and resumed by whichever thread frees the room: no
//!   pause interval, no sleep.
//! - **Ordered where it matters:** [`Ordering::Key`] (in order per key,
//!   parallel across keys; the default), [`Ordering::Partition`] or
//!   [`Ordering::Unordered`].
//! - **At least once:** offsets are committed only up to the lowest unfinished
//!   offset of each partition (periodically, on revoke and on shutdown); a crash
//!   can make messages run again, never skip one.
//! - **Failures:** the handler's [`RetryPolicy`](conveyor::RetryPolicy) retries
//!   with backoff without blocking other keys; after the last attempt the record
//!   goes to a dead-letter topic (see [`DeadLetter`]) with headers naming the
//!   error and the original topic, partition and offset. Records that do not
//!   decode go there too.
//! - **Rebalances:** on revoke, the partition's messages stop being dispatched,
//!   its in-flight ones get [`ConsumerConfig::revoke_timeout`], what is safe is
//!   committed, and nothing of it is committed once it is gone.
//!
//! [`Handler`]: conveyor::Handler

mod admin;
mod config;
mod consumer;
mod consumer_state;
mod context;
mod dead_letter;
pub mod decode;
mod error;
mod flow;
mod keys;
mod message;
mod metrics;
mod offsets;
mod ordering;
mod outcome;
mod partition;
mod poll;
#[cfg(feature = "metrics")]
pub mod prometheus;
mod rebalance;
mod source;
mod url;

pub use admin::create_topics;
pub use config::{
    ConsumerConfig, DeadLetter, StartFrom, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PAUSE_AFTER,
    DEFAULT_READ_AHEAD, MAX_PAUSE_AFTER,
};
pub use consumer::{ConsumerBuilder, ConsumerHandle, KafkaConsumer, RunReport};
pub use dead_letter::{
    HEADER_ATTEMPTS, HEADER_ERROR, HEADER_GROUP, HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON,
    HEADER_TOPIC,
};
pub use error::Error;
pub use message::Message;
pub use metrics::{Completion, ConsumerMetrics, Counters, Disposition, PartitionMetrics};
pub use ordering::Ordering;
pub use url::parse_url;

/// Re-exported so users need no direct dependency on the client crate.
pub use rdkafka;
