//! The dead-letter writer: a message whose last attempt failed, or that could
//! not be decoded, is written to the dead-letter topic with its key, payload
//! and headers, plus headers that say what went wrong and where it came from.
//! Its offset counts as finished only once the broker acknowledged the write.
//!
//! The producer is made on the first dead letter, not with the consumer: most
//! consumers never write one, and a producer is a client of its own (its
//! threads, a connection per broker, and a polling thread that wakes ten
//! times a second). Its settings are checked when the consumer is built.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use crate::consumer_state::ConsumerState;
use crate::error::Error;
use crate::message::Message;
use crate::partition::Coord;

/// Header: the error of the last attempt (or the decoder's error).
pub const HEADER_ERROR: &str = "conveyor.error";
/// Header: `failed`, `timed_out`, `panicked` or `undecodable`.
pub const HEADER_REASON: &str = "conveyor.reason";
/// Header: attempts made.
pub const HEADER_ATTEMPTS: &str = "conveyor.attempts";
/// Header: the source topic.
pub const HEADER_TOPIC: &str = "conveyor.topic";
/// Header: the source partition (decimal).
pub const HEADER_PARTITION: &str = "conveyor.partition";
/// Header: the source offset (decimal).
pub const HEADER_OFFSET: &str = "conveyor.offset";
/// Header: the consumer group.
pub const HEADER_GROUP: &str = "conveyor.group";

/// Why a message is dead-lettered, and what happened.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) reason: &'static str,
    pub(crate) error: String,
    pub(crate) attempts: u32,
}

/// What the delivery callback needs to finish the message.
pub(crate) struct Ticket {
    pub(crate) shared: Weak<ConsumerState>,
    pub(crate) coord: Coord,
    pub(crate) message: Message,
    pub(crate) failure: Failure,
}

/// The producer's context: finishes the message when the broker answers.
pub(crate) struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        let error = result.as_ref().err().map(|(e, _)| e.to_string());
        if let Some(shared) = ticket.shared.upgrade() {
            shared.dead_letter_done(*ticket, error);
        }
    }
}

/// Writes dead letters.
pub(crate) struct DeadLetterWriter {
    config: ClientConfig,
    /// Made by the first write (see the module's comment).
    producer: Mutex<Option<Arc<ThreadedProducer<DeliveryContext>>>>,
    group: String,
}

impl DeadLetterWriter {
    pub(crate) fn new(
        brokers: &str,
        group: &str,
        extra: &[(String, String)],
    ) -> Result<Self, Error> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (k, v) in extra {
            if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
                c.set(k, v);
            }
        }
        // Every setting checked now, as making the producer would; nothing
        // is started.
        c.create_native_config()?;
        Ok(Self {
            config: c,
            producer: Mutex::new(None),
            group: group.to_string(),
        })
    }

    /// The producer, made on first use (a failure is retried by the next
    /// write).
    fn producer(&self) -> Result<Arc<ThreadedProducer<DeliveryContext>>, String> {
        let mut slot = self.producer.lock();
        if let Some(p) = &*slot {
            return Ok(p.clone());
        }
        let p: ThreadedProducer<DeliveryContext> = self
            .config
            .create_with_context(DeliveryContext)
            .map_err(|e| format!("cannot start the dead-letter producer: {e}"))?;
        let p = Arc::new(p);
        *slot = Some(p.clone());
        Ok(p)
    }

    /// True once the first write made the producer.
    #[cfg(test)]
    pub(crate) fn started(&self) -> bool {
        self.producer.lock().is_some()
    }

    /// Queues the write; the outcome arrives in `ConsumerState::dead_letter_done`.
    /// On an immediate refusal the ticket is handed back with the error.
    pub(crate) fn send(&self, topic: &str, ticket: Ticket) -> Result<(), (Box<Ticket>, String)> {
        let producer = match self.producer() {
            Ok(p) => p,
            Err(e) => return Err((Box::new(ticket), e)),
        };
        let mut headers = OwnedHeaders::new_with_capacity(ticket.message.headers().len() + 7);
        for (k, v) in ticket.message.headers() {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let partition = ticket.coord.partition.to_string();
        let offset = ticket.coord.offset.to_string();
        let attempts = ticket.failure.attempts.to_string();
        for (k, v) in [
            (HEADER_ERROR, ticket.failure.error.as_str()),
            (HEADER_REASON, ticket.failure.reason),
            (HEADER_ATTEMPTS, attempts.as_str()),
            (HEADER_TOPIC, &*ticket.coord.topic),
            (HEADER_PARTITION, partition.as_str()),
            (HEADER_OFFSET, offset.as_str()),
            (HEADER_GROUP, self.group.as_str()),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let message = ticket.message.clone();
        let mut record: BaseRecord<'_, [u8], [u8], Box<Ticket>> =
            BaseRecord::with_opaque_to(topic, Box::new(ticket)).headers(headers);
        if let Some(k) = message.key() {
            record = record.key(k);
        }
        if let Some(p) = message.payload() {
            record = record.payload(p);
        }
        producer
            .send(record)
            .map_err(|(e, record)| (record.delivery_opaque, e.to_string()))
    }

    /// Waits (at most `timeout`) for queued writes to be answered.
    pub(crate) fn flush(&self, timeout: std::time::Duration) {
        use rdkafka::producer::Producer;
        let Some(producer) = self.producer.lock().clone() else {
            return;
        };
        if let Err(e) = producer.flush(timeout) {
            tracing::warn!(error = %e, "dead-letter writes still pending at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_waits_for_the_first_dead_letter() {
        let w = DeadLetterWriter::new("127.0.0.1:1", "g", &[]).unwrap();
        assert!(!w.started());
        // Nothing to flush: returns at once, still nothing started.
        w.flush(std::time::Duration::from_secs(5));
        assert!(!w.started());
    }

    #[test]
    fn bad_settings_are_refused_when_the_consumer_is_built() {
        let extra = [(
            "security.protocol".to_string(),
            "carrier-pigeon".to_string(),
        )];
        let err = DeadLetterWriter::new("127.0.0.1:1", "g", &extra)
            .err()
            .expect("an unknown security protocol is refused");
        assert!(err.to_string().contains("security.protocol"), "{err}");
    }
}
