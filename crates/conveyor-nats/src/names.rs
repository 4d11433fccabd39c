//! Every name the backend gives the server, derived from one prefix: the
//! streams, the key-value bucket, the subjects, the consumers and the keys.
//!
//! A queue name (or a unique key, a role, a worker id) may hold characters a
//! subject token, a consumer name or a key may not (`.`, `*`, `>`, spaces,
//! anything beyond ASCII): they are encoded here, reversibly, and only here,
//! so no other module builds a subject by hand. Letters, digits and `-` stay
//! as they are; every other byte becomes `_` and two hex digits, so the
//! encoding is a valid subject token, consumer name and key at once.

use conveyor_core::Error;

/// The prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "conveyor";

/// Width of one time bucket of the schedule stream, in milliseconds.
pub(crate) const BUCKET_MS: i64 = 1_000;

/// Encodes `raw` as a subject token (see the module documentation).
pub(crate) fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// Decodes a token made by [`encode`]; `None` for anything else.
pub(crate) fn decode(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The names of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    /// The namespace `prefix`: letters, digits, `_` and `-` (it is part of
    /// stream and bucket names, which allow no more).
    pub(crate) fn new(prefix: &str) -> Result<Names, Error> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::InvalidConfig(format!(
                "the NATS prefix {prefix:?} must be 1 to 64 letters, digits, '_' or '-'"
            )));
        }
        Ok(Names {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The ledger's key-value bucket.
    pub(crate) fn bucket(&self) -> String {
        format!("{}_tasks", self.prefix)
    }

    /// The stream behind the ledger bucket (JetStream names it so).
    pub(crate) fn bucket_stream(&self) -> String {
        format!("KV_{}", self.bucket())
    }

    /// The subject a ledger key is stored on.
    pub(crate) fn key_subject(&self, key: &str) -> String {
        format!("$KV.{}.{key}", self.bucket())
    }

    /// The work-queue stream of ready messages.
    pub(crate) fn ready_stream(&self) -> String {
        format!("{}_ready", self.prefix)
    }

    /// The stream of scheduled entries (delays and retry backoffs).
    pub(crate) fn sched_stream(&self) -> String {
        format!("{}_sched", self.prefix)
    }

    /// Every ready subject.
    pub(crate) fn ready_all(&self) -> String {
        format!("{}.ready.>", self.prefix)
    }

    /// Every schedule subject.
    pub(crate) fn sched_all(&self) -> String {
        format!("{}.sched.>", self.prefix)
    }

    /// The subject of `queue`'s ready messages of priority `priority`.
    pub(crate) fn ready_subject(&self, queue: &str, priority: i32) -> String {
        format!("{}.ready.{}.{priority}", self.prefix, encode(queue))
    }

    /// The subject of `queue`'s entries due in the bucket of `run_at` (ms).
    pub(crate) fn sched_subject(&self, queue: &str, run_at: i64) -> String {
        format!(
            "{}.sched.{}.{}",
            self.prefix,
            encode(queue),
            run_at.div_euclid(BUCKET_MS)
        )
    }

    /// The queue and priority of a ready subject.
    pub(crate) fn parse_ready(&self, subject: &str) -> Option<(String, i32)> {
        let rest = subject.strip_prefix(&format!("{}.ready.", self.prefix))?;
        let (queue, priority) = rest.split_once('.')?;
        Some((decode(queue)?, priority.parse().ok()?))
    }

    /// The queue and bucket number of a schedule subject.
    pub(crate) fn parse_sched(&self, subject: &str) -> Option<(String, i64)> {
        let rest = subject.strip_prefix(&format!("{}.sched.", self.prefix))?;
        let (queue, bucket) = rest.split_once('.')?;
        Some((decode(queue)?, bucket.parse().ok()?))
    }

    /// The durable pull consumer of one queue and priority.
    pub(crate) fn consumer(&self, queue: &str, priority: i32) -> String {
        format!("{}_{}_{priority}", self.prefix, encode(queue))
    }

    /// The core subject that wakes idle workers of `queue`.
    pub(crate) fn wake_subject(&self, queue: &str) -> String {
        format!("{}.wake.{}", self.prefix, encode(queue))
    }

    /// Every wake subject.
    pub(crate) fn wake_all(&self) -> String {
        format!("{}.wake.>", self.prefix)
    }

    /// The queue a wake subject names.
    pub(crate) fn parse_wake(&self, subject: &str) -> Option<String> {
        decode(subject.strip_prefix(&format!("{}.wake.", self.prefix))?)
    }

    /// The core subject finished task ids are announced on.
    pub(crate) fn finished_subject(&self) -> String {
        format!("{}.finished", self.prefix)
    }
}

/// Ledger keys.
pub(crate) mod keys {
    use super::encode;

    /// The id counter.
    pub(crate) const SEQ: &str = "seq";
    /// Every task record.
    pub(crate) const TASKS: &str = "t.>";
    /// Every worker entry.
    pub(crate) const WORKERS: &str = "w.>";
    /// The paused queues (one entry for the whole set).
    pub(crate) const PAUSED: &str = "paused";

    /// A task's record.
    pub(crate) fn task(id: u64) -> String {
        format!("t.{id}")
    }

    /// The workflow id counter.
    pub(crate) const FLOW_SEQ: &str = "fseq";
    /// Every workflow's entry (`f.<id>`; the workflow keys are
    /// `conveyor_core::workflow::entries`').
    pub(crate) const FLOWS: &str = "f.*";

    /// Every periodic schedule's entry (`s.<name>`).
    pub(crate) const SCHEDULES: &str = "s.*";

    /// A periodic schedule's entry.
    pub(crate) fn schedule(name: &str) -> String {
        format!("s.{}", encode(name))
    }

    /// The claim on a unique key of a queue.
    pub(crate) fn claim(queue: &str, unique_key: &str) -> String {
        format!("u.{}.{}", encode(queue), encode(unique_key))
    }

    /// The lead of a maintenance role.
    pub(crate) fn lead(role: &str) -> String {
        format!("lead.{}", encode(role))
    }

    /// A worker's heartbeat.
    pub(crate) fn worker(id: &str) -> String {
        format!("w.{}", encode(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_is_a_token() {
        for raw in ["default", "a.b c*>", "émails", "_x_", "with-dash", "UP_2"] {
            let e = encode(raw);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{e}"
            );
            assert_eq!(decode(&e).as_deref(), Some(raw));
        }
        assert_eq!(decode("_G1"), None);
        assert_eq!(decode("_4"), None);
    }

    #[test]
    fn subjects_parse_back() {
        let n = Names::new("p-1").expect("prefix");
        let s = n.ready_subject("a.b", -3);
        assert_eq!(n.parse_ready(&s), Some(("a.b".to_string(), -3)));
        let s = n.sched_subject("q", 12_345);
        assert_eq!(n.parse_sched(&s), Some(("q".to_string(), 12)));
        assert_eq!(n.parse_wake(&n.wake_subject("x y")).as_deref(), Some("x y"));
        assert!(Names::new("a.b").is_err());
        assert!(Names::new("").is_err());
    }
}
