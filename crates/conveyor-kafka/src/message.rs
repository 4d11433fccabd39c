//! An owned copy of one Kafka record, cheap to clone (the engine clones params
//! for retries), handed to handlers and decoders.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};

/// A record's headers, in order: each name and its value, if any.
type Headers = Arc<[(String, Option<Vec<u8>>)]>;

/// One record taken from Kafka: where it came from, its key, payload and headers.
#[derive(Debug, Clone)]
pub struct Message {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    /// The key's bytes, then the payload's, in one allocation.
    bytes: Arc<[u8]>,
    /// The key's length in `bytes`, if the record has a key.
    key_len: Option<usize>,
    /// Whether the record has a payload (the rest of `bytes`).
    has_payload: bool,
    /// The headers, in order (`None` for none, which most records have).
    headers: Option<Headers>,
}

impl Message {
    /// Copies a record out of the client's buffers.
    pub(crate) fn copy_from(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Self {
        let headers = m.headers().filter(|hs| hs.count() > 0).map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect::<Vec<_>>()
                .into()
        });
        Self::assemble(
            topic,
            m.partition(),
            m.offset(),
            m.timestamp().to_millis(),
            (m.key(), m.payload()),
            headers,
        )
    }

    /// A message built by hand (for tests of handlers and decoders).
    pub fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Self {
        Self::assemble(
            Arc::from(topic),
            partition,
            offset,
            None,
            (key, payload),
            None,
        )
    }

    fn assemble(
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        (key, payload): (Option<&[u8]>, Option<&[u8]>),
        headers: Option<Headers>,
    ) -> Self {
        let (k, p) = (key.unwrap_or_default(), payload.unwrap_or_default());
        let mut bytes = Vec::with_capacity(k.len() + p.len());
        bytes.extend_from_slice(k);
        bytes.extend_from_slice(p);
        Self {
            topic,
            partition,
            offset,
            timestamp,
            bytes: bytes.into(),
            key_len: key.map(<[u8]>::len),
            has_payload: payload.is_some(),
            headers,
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
        self.key_len.map(|n| &self.bytes[..n])
    }

    /// The payload bytes (`None` for a tombstone).
    pub fn payload(&self) -> Option<&[u8]> {
        self.has_payload
            .then(|| &self.bytes[self.key_len.unwrap_or(0)..])
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
        self.headers.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_payload_share_one_buffer_and_stay_apart() {
        let m = Message::new("t", 1, 7, Some(b"key"), Some(b"payload"));
        assert_eq!(m.key(), Some(&b"key"[..]));
        assert_eq!(m.payload(), Some(&b"payload"[..]));
        assert_eq!(
            (m.key_str(), m.payload_str()),
            (Some("key"), Some("payload"))
        );
        let none = Message::new("t", 1, 8, None, None);
        assert_eq!((none.key(), none.payload()), (None, None));
        let empty = Message::new("t", 1, 9, Some(b""), Some(b""));
        assert_eq!(
            (empty.key(), empty.payload()),
            (Some(&b""[..]), Some(&b""[..]))
        );
        let tombstone = Message::new("t", 1, 10, Some(b"k"), None);
        assert_eq!(
            (tombstone.key(), tombstone.payload()),
            (Some(&b"k"[..]), None)
        );
        let keyless = Message::new("t", 1, 11, None, Some(b"p"));
        assert_eq!((keyless.key(), keyless.payload()), (None, Some(&b"p"[..])));
        assert!(m.headers().is_empty());
    }
}
