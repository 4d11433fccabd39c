//! What a running consumer reports: how many messages are in flight, whether
//! it holds or its partitions are paused, per-partition offsets and lag, the executor's
//! counts ([`RunnerStats`], the same as a durable worker's) and the counts
//! only Kafka has (records received, dead-letter writes, holds, pauses,
//! commits).

use conveyor::source::RunnerStats;

use crate::message::Message;

/// A point-in-time view of a consumer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerMetrics {
    /// Messages handed to the engine and not finished (running, between
    /// retries, or being dead-lettered). Never above `max_in_flight`.
    pub in_flight: usize,
    /// The configured limit.
    pub max_in_flight: usize,
    /// True while the assigned partitions are paused: the read-ahead has
    /// been full (with no read-ahead: every in-flight slot busy) for
    /// `pause_after`.
    pub paused: bool,
    /// True while the consumer holds: its read-ahead is full, it takes
    /// nothing more and has not paused (yet). Holding or paused, it is at
    /// its limit.
    pub holding: bool,
    /// Messages taken ahead, waiting for a free slot or for their busy key
    /// (at most the configured read-ahead, plus the free in-flight places
    /// the runner is about to fill).
    pub waiting: usize,
    /// What Kafka alone counts, since the consumer started.
    pub counters: Counters,
    /// The executor's counts, as every source's runner keeps them: records
    /// completed, dead-lettered, discarded, released (their work cancelled
    /// by a revoke or the end of the shutdown grace: not committed, they
    /// run again wherever their partition goes), retries in place.
    pub runner: RunnerStats,
    /// One entry per assigned partition.
    pub partitions: Vec<PartitionMetrics>,
}

/// What only a Kafka consumer counts, since it started (how tasks ended is
/// in [`ConsumerMetrics::runner`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages taken from Kafka.
    pub received: u64,
    /// Messages written to the dead-letter topic (failures and undecodable).
    pub dead_lettered: u64,
    /// Of those, messages that could not be decoded.
    pub undecodable: u64,
    /// Dead-letter writes that failed: the message stays uncommitted.
    pub dead_letter_errors: u64,
    /// Times the consumer began holding at the limit (see
    /// [`ConsumerMetrics::holding`]).
    pub holds: u64,
    /// Times the consumer paused its partitions at the limit.
    pub pauses: u64,
    /// Offset commits sent (synchronous ones acknowledged, asynchronous ones
    /// accepted by the client; a failure is retried at the next round).
    pub commits: u64,
}

/// One assigned partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionMetrics {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Messages of it in flight.
    pub in_flight: usize,
    /// Offsets taken and not finished (in flight, waiting, or stuck after a
    /// failed dead-letter write).
    pub unfinished: usize,
    /// The last offset committed by this consumer (the next one to read).
    pub committed: Option<i64>,
    /// One past the highest offset taken from Kafka.
    pub next_offset: Option<i64>,
    /// The partition's high watermark, as last reported by the client.
    pub high_watermark: Option<i64>,
    /// Messages not yet committed: high watermark minus the committed offset.
    pub lag: Option<i64>,
}

/// How one message ended, as given to [`ConsumerBuilder::on_complete`](crate::ConsumerBuilder::on_complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The handler succeeded.
    Succeeded,
    /// The handler asked to discard it.
    Discarded,
    /// Written to the dead-letter topic (or dropped, with no dead-letter topic).
    DeadLettered,
    /// Its work was cancelled by a revoke or shutdown; it will be delivered again.
    Cancelled,
}

/// One finished message.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The record.
    pub message: Message,
    /// How it ended.
    pub disposition: Disposition,
    /// Attempts the handler made (0 for an undecodable message).
    pub attempts: u32,
    /// The last error, for dead-lettered messages.
    pub error: Option<String>,
}
