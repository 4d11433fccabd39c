//! The consumer's configuration: where to read, as which group, how many
//! messages at once, in which order, and where failures go.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::error::Error;
use crate::ordering::Ordering;

/// The default [`ConsumerConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 50;

/// The default [`ConsumerConfig::read_ahead`].
pub const DEFAULT_READ_AHEAD: usize = 10_000;

/// The default [`ConsumerConfig::pause_after`].
pub const DEFAULT_PAUSE_AFTER: Duration = Duration::from_secs(1);

/// The longest [`ConsumerConfig::pause_after`]: rebalances wait while the
/// consumer holds, and the group gives up on a member that does not serve
/// them within its rebalance timeout (`max.poll.interval.ms`, 5 min).
pub const MAX_PAUSE_AFTER: Duration = Duration::from_secs(60);

/// Where messages go whose last attempt failed (or that could not be decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// The source topic's name with this suffix (default: `.dlq`, so failures
    /// of `orders` go to `orders.dlq`).
    Suffix(String),
    /// One topic for every source topic.
    Topic(String),
    /// No dead-letter topic: the failure is logged and the offset committed
    /// past. Use only where losing a failed message is acceptable.
    Drop,
}

impl Default for DeadLetter {
    fn default() -> Self {
        DeadLetter::Suffix(".dlq".to_string())
    }
}

impl DeadLetter {
    /// The dead-letter topic for messages of `topic`, if any.
    pub fn topic_for(&self, topic: &str) -> Option<String> {
        match self {
            DeadLetter::Suffix(s) => Some(format!("{topic}{s}")),
            DeadLetter::Topic(t) => Some(t.clone()),
            DeadLetter::Drop => None,
        }
    }
}

/// Where the group starts reading a partition that has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The oldest retained message (the default: nothing is skipped).
    #[default]
    Earliest,
    /// Only messages produced after the group first joined.
    Latest,
}

/// Everything a [`KafkaConsumer`](crate::KafkaConsumer) needs to know.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The consumer group.
    pub group: String,
    /// The topics to subscribe to.
    pub topics: Vec<String>,
    /// Which messages run in order (default [`Ordering::Key`]).
    pub ordering: Ordering,
    /// At most this many messages in processing: handed to the engine and not
    /// finished (running, between retries, being dead-lettered). Default 50.
    pub max_in_flight: usize,
    /// Messages taken ahead — while every in-flight slot is busy, or behind
    /// their busy key — so a freed slot is refilled at once instead of after
    /// a fetch (default 10,000, in line with librdkafka's own prefetch).
    /// When it is full (with 0: when every slot is busy) the consumer stops
    /// taking records, and pauses the partitions if it is still full after
    /// [`ConsumerConfig::pause_after`]; paused, it resumes once the
    /// read-ahead is half empty (with 0: at the first free slot). librdkafka
    /// drops what it prefetched for a paused partition and fetches it again
    /// on resume, so a small read-ahead makes the consumer pay a fetch round
    /// trip every few messages. Memory holds at most
    /// `max_in_flight + read_ahead` records taken from the client.
    pub read_ahead: usize,
    /// How long the read-ahead may stay full before the partitions are
    /// paused (default 1 s; at most 60 s). Until then the consumer only stops
    /// taking records: the client keeps its prefetch, so a consumer that
    /// frees room within this time never pays for a refetch. Rebalances and
    /// the client's callbacks wait meanwhile; zero pauses at once.
    pub pause_after: Duration,
    /// How often finished offsets are committed (also on revoke and shutdown).
    pub commit_interval: Duration,
    /// On revoke, how long to wait for the partition's in-flight messages before
    /// committing what is safe and letting the partition go.
    pub revoke_timeout: Duration,
    /// On shutdown, how long running messages get to finish.
    pub shutdown_grace: Duration,
    /// Where failed and undecodable messages go.
    pub dead_letter: DeadLetter,
    /// Where to start without a committed offset.
    pub start_from: StartFrom,
    /// The group session timeout (librdkafka's `session.timeout.ms`); a dead
    /// consumer's partitions move to the others after this long. `None` keeps
    /// librdkafka's default (45 s).
    pub session_timeout: Option<Duration>,
    /// More librdkafka properties, applied last (they win).
    pub properties: Vec<(String, String)>,
}

impl ConsumerConfig {
    /// A configuration with the defaults: key ordering, 50 in flight, commits
    /// every second, failures to `<topic>.dlq`.
    pub fn new(
        brokers: impl Into<String>,
        group: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            brokers: brokers.into(),
            group: group.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            ordering: Ordering::Key,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            read_ahead: DEFAULT_READ_AHEAD,
            pause_after: DEFAULT_PAUSE_AFTER,
            commit_interval: Duration::from_secs(1),
            revoke_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            dead_letter: DeadLetter::default(),
            start_from: StartFrom::Earliest,
            session_timeout: None,
            properties: Vec::new(),
        }
    }

    /// Sets the ordering mode.
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Sets the in-flight limit.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets the read-ahead.
    pub fn read_ahead(mut self, n: usize) -> Self {
        self.read_ahead = n;
        self
    }

    /// Sets how long the read-ahead may stay full before the partitions are
    /// paused.
    pub fn pause_after(mut self, after: Duration) -> Self {
        self.pause_after = after;
        self
    }

    /// Sets the dead-letter destination.
    pub fn dead_letter(mut self, dead_letter: DeadLetter) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    /// Sets the group session timeout.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = Some(timeout);
        self
    }

    /// Sets how often offsets are committed.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Sets the shutdown grace period.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets how long a revoke waits for in-flight messages.
    pub fn revoke_timeout(mut self, timeout: Duration) -> Self {
        self.revoke_timeout = timeout;
        self
    }

    /// Sets where to start without a committed offset.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start_from = start;
        self
    }

    /// Adds a librdkafka property (applied after conveyor's own settings).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Checks the values a consumer cannot run with.
    pub fn validate(&self) -> Result<(), Error> {
        if self.brokers.trim().is_empty() {
            return Err(Error::Config("no brokers".into()));
        }
        if self.group.trim().is_empty() {
            return Err(Error::Config("no consumer group".into()));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::Config("no topic (or an empty topic name)".into()));
        }
        if self.max_in_flight == 0 {
            return Err(Error::Config("max_in_flight must be at least 1".into()));
        }
        if self.pause_after > MAX_PAUSE_AFTER {
            return Err(Error::Config(format!(
                "pause_after must be at most {} s (rebalances wait while the consumer holds)",
                MAX_PAUSE_AFTER.as_secs()
            )));
        }
        if self.commit_interval.is_zero() {
            return Err(Error::Config("commit_interval must be above zero".into()));
        }
        Ok(())
    }

    /// The librdkafka consumer settings: manual commits of explicit offsets only.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            // Offsets are committed by conveyor only, below the lowest unfinished one.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match self.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            // A resume should not wait long for its first fetch (some brokers
            // hold a fetch for the full wait even when data is there).
            .set("fetch.wait.max.ms", "100")
            // Partition statistics (high watermarks) for the lag metric.
            .set("statistics.interval.ms", "1000");
        if let Some(t) = self.session_timeout {
            let ms = t.as_millis().max(1);
            c.set("session.timeout.ms", ms.to_string())
                .set("heartbeat.interval.ms", (ms / 3).max(1).to_string());
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_topics() {
        assert_eq!(
            DeadLetter::default().topic_for("orders").as_deref(),
            Some("orders.dlq")
        );
        assert_eq!(
            DeadLetter::Topic("failures".into())
                .topic_for("orders")
                .as_deref(),
            Some("failures")
        );
        assert_eq!(DeadLetter::Drop.topic_for("orders"), None);
    }

    #[test]
    fn validation() {
        assert!(ConsumerConfig::new("127.0.0.1:9092", "g", ["t"])
            .validate()
            .is_ok());
        assert!(ConsumerConfig::new("127.0.0.1:9092", "", ["t"])
            .validate()
            .is_err());
        assert!(
            ConsumerConfig::new("127.0.0.1:9092", "g", Vec::<String>::new())
                .validate()
                .is_err()
        );
        assert!(ConsumerConfig::new("127.0.0.1:9092", "g", ["t"])
            .max_in_flight(0)
            .validate()
            .is_err());
    }
}
