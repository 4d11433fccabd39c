//! An owned copy of one Kafka record, cheap to clone (the engine clones params
//! for retries), handed to handlers and decoders.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Headers, Message as _};

/// One record taken from Kafka: where it came from, its key, payload and headers.
#[derive(Debug, Clone)]
pub struct Message {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Arc<[u8]>>,
    payload: Option<Arc<[u8]>>,
    headers: Arc<[(String, Option<Vec<u8>>)]>,
}

impl Message {
    /// Copies a record out of the client's buffers.
    pub(crate) fn copy_from(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Self {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Self {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(Arc::from),
            payload: m.payload().map(Arc::from),
            headers: headers.into(),
        }
    }

    /// A message built by hand (for tests of handlers and decoders).
    pub fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Self {
        Self {
            topic: Arc::from(topic),
            partition,
            offset,
            timestamp: None,
            key: key.map(Arc::from),
            payload: payload.map(Arc::from),
            headers: Arc::new([]),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset within the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp in milliseconds since the epoch, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The record's timestamp as a time, when it has one after the epoch.
    pub fn timestamp_at(&self) -> Option<std::time::SystemTime> {
        let ms = u64::try_from(self.timestamp?).ok()?;
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms))
    }

    /// The key bytes, if the record has a key.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The payload bytes (`None` for a tombstone).
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// The key as UTF-8 text, if it has one and it is valid UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The payload as UTF-8 text, if it is valid UTF-8.
    pub fn payload_str(&self) -> Option<&str> {
        self.payload().and_then(|p| std::str::from_utf8(p).ok())
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[(String, Option<Vec<u8>>)] {
        &self.headers
    }
}
