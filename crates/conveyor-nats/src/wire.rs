//! The binary encoding of a task record, as stored in the ledger and as
//! copied into an enqueued task's first ready message.
//!
//! A record is written on every state change (the reserve's and the
//! finish's compare-and-set) and read on most, so its encoding is on the
//! worker's hot path. This one is a version byte ([`VERSION`]) and then the
//! fields in a fixed order: unsigned numbers as LEB128 varints, signed ones
//! zig-zagged first, an optional field as a presence byte and the value,
//! text and bytes as their length and then their bytes. The payload and
//! the result are stored as they are, so binary payloads cost no encoding.
//!
//! Version 2 adds the trace context (as `TraceContext::encode` writes it,
//! an optional text) of the record, after `msg_seq`, and of each follow-up,
//! after its unique key; version 1 records (no trace contexts) are still
//! read, with none.
//!
//! Version 3 adds the attempt fields of the record, after its trace
//! context: the latest attempt's worker (optional text) and start
//! (optional signed number), and the settled attempts (optional text, the
//! stored form of `conveyor_core::attempt`); version 2 records are read
//! with none.
//!
//! Version 4 adds the task's own keep (optional milliseconds) and its
//! expiry (optional signed milliseconds) after the attempt fields, and the
//! keep of each follow-up after its trace context; version 3 records are
//! read with none.
//!
//! Version 5 adds the workflow node a task runs (optional: the workflow's
//! id and the node's index, both unsigned) after the expiry; version 4
//! records are read with none.
//!
//! Records written by earlier versions (a line of JSON, then the payload
//! and result bytes) begin with `{`, never with [`VERSION`], and are still
//! read (`record.rs` falls back to them): records stay in the bucket across
//! upgrades. Earlier versions cannot read this encoding, so every process
//! of a namespace is upgraded together.

use crate::record::{FollowUp, NodeLink, Rec, Spec};

/// The first byte of a record in this encoding (JSON begins with `{`).
pub(crate) const VERSION: u8 = 5;

/// The first byte of a record in the encoding before workflow nodes, still
/// read.
pub(crate) const VERSION_4: u8 = 4;

/// The first byte of a record in the encoding before keeps and expiries,
/// still read.
pub(crate) const VERSION_3: u8 = 3;

/// The first byte of a record in the encoding before attempt history,
/// still read.
pub(crate) const VERSION_2: u8 = 2;

/// The first byte of a record in the encoding before trace contexts, still
/// read.
pub(crate) const VERSION_1: u8 = 1;

/// Most follow-ups a record may claim to hold, against a corrupt count
/// asking for a huge allocation.
const MAX_FOLLOW_UPS: u64 = 1 << 20;

/// Appends what a record holds to a buffer.
struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn i64(&mut self, v: i64) {
        self.u64(((v << 1) ^ (v >> 63)) as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.0.push(1);
                self.u64(v);
            }
            None => self.0.push(0),
        }
    }

    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                self.0.push(1);
                self.i64(v);
            }
            None => self.0.push(0),
        }
    }

    fn opt_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            Some(b) => {
                self.0.push(1);
                self.bytes(b);
            }
            None => self.0.push(0),
        }
    }

    fn spec(&mut self, s: &Spec, version: u8) {
        self.bytes(s.queue.as_bytes());
        self.bytes(s.handler.as_bytes());
        self.bytes(&s.payload);
        self.i64(i64::from(s.priority));
        self.i64(s.run_at);
        self.u64(u64::from(s.max_attempts));
        self.opt_u64(s.timeout_ms);
        self.opt_bytes(s.unique_key.as_deref().map(str::as_bytes));
        if version >= 2 {
            self.opt_bytes(s.trace.as_deref().map(str::as_bytes));
        }
        if version >= 4 {
            self.opt_u64(s.keep_ms);
        }
    }
}

/// `rec` in this encoding.
pub(crate) fn encode(rec: &Rec) -> Vec<u8> {
    encode_as(rec, VERSION)
}

/// `rec` in encoding `version` (1 drops the trace contexts).
fn encode_as(rec: &Rec, version: u8) -> Vec<u8> {
    let size = 64
        + rec.queue.len()
        + rec.handler.len()
        + rec.payload.len()
        + rec.result.as_ref().map_or(0, Vec::len)
        + rec.error.as_ref().map_or(0, String::len)
        + rec.history.as_ref().map_or(0, String::len);
    let mut w = Writer(Vec::with_capacity(size));
    w.0.push(version);
    w.u64(rec.id);
    w.bytes(rec.queue.as_bytes());
    w.bytes(rec.handler.as_bytes());
    w.i64(i64::from(rec.priority));
    w.u64(u64::from(rec.max_attempts));
    w.opt_u64(rec.timeout_ms);
    w.opt_bytes(rec.unique_key.as_deref().map(str::as_bytes));
    w.i64(rec.state);
    w.u64(u64::from(rec.attempts));
    w.u64(rec.reservations);
    w.u64(rec.token);
    w.opt_i64(rec.lease_until);
    w.i64(rec.run_at);
    w.i64(rec.created_at);
    w.opt_i64(rec.finished_at);
    w.opt_bytes(rec.error.as_deref().map(str::as_bytes));
    w.u64(rec.dispatch);
    w.opt_u64(rec.msg_seq);
    if version >= 2 {
        w.opt_bytes(rec.trace.as_deref().map(str::as_bytes));
    }
    if version >= 3 {
        w.opt_bytes(rec.worker.as_deref().map(str::as_bytes));
        w.opt_i64(rec.started_at);
        w.opt_bytes(rec.history.as_deref().map(str::as_bytes));
    }
    if version >= 4 {
        w.opt_u64(rec.keep_ms);
        w.opt_i64(rec.expires_at);
    }
    if version >= 5 {
        match rec.node {
            Some(link) => {
                w.0.push(1);
                w.u64(link.flow);
                w.u64(u64::from(link.node));
            }
            None => w.0.push(0),
        }
    }
    w.u64(rec.follow_ups.len() as u64);
    for f in &rec.follow_ups {
        w.u64(f.id);
        w.spec(&f.spec, version);
    }
    w.bytes(&rec.payload);
    w.opt_bytes(rec.result.as_deref());
    w.0
}

/// Reads what a [`Writer`] wrote; `None` at the first thing that does not
/// fit (short input, a bad flag, text that is not UTF-8, a number too big).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    fn u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn i64(&mut self) -> Option<i64> {
        let v = self.u64()?;
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    fn i32(&mut self) -> Option<i32> {
        i32::try_from(self.i64()?).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        if n > self.0.len() {
            return None;
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(b)
    }

    fn text(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_string)
    }

    fn flag(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.flag()? {
            read(self).map(Some)
        } else {
            Some(None)
        }
    }

    fn spec(&mut self, version: u8) -> Option<Spec> {
        Some(Spec {
            queue: self.text()?,
            handler: self.text()?,
            payload: self.bytes()?.to_vec(),
            priority: self.i32()?,
            run_at: self.i64()?,
            max_attempts: self.u32()?,
            timeout_ms: self.opt(Self::u64)?,
            unique_key: self.opt(Self::text)?,
            trace: if version >= 2 {
                self.opt(Self::text)?
            } else {
                None
            },
            keep_ms: if version >= 4 {
                self.opt(Self::u64)?
            } else {
                None
            },
        })
    }
}

/// A record from `bytes` in this encoding (its first byte is [`VERSION`]
/// or [`VERSION_1`]); `None` when they do not hold one, trailing bytes
/// included.
pub(crate) fn decode(bytes: &[u8]) -> Option<Rec> {
    let mut r = Reader(bytes);
    let version = r.byte()?;
    if ![VERSION, VERSION_4, VERSION_3, VERSION_2, VERSION_1].contains(&version) {
        return None;
    }
    let id = r.u64()?;
    let queue = r.text()?;
    let handler = r.text()?;
    let priority = r.i32()?;
    let max_attempts = r.u32()?;
    let timeout_ms = r.opt(Reader::u64)?;
    let unique_key = r.opt(Reader::text)?;
    let state = r.i64()?;
    let attempts = r.u32()?;
    let reservations = r.u64()?;
    let token = r.u64()?;
    let lease_until = r.opt(Reader::i64)?;
    let run_at = r.i64()?;
    let created_at = r.i64()?;
    let finished_at = r.opt(Reader::i64)?;
    let error = r.opt(Reader::text)?;
    let dispatch = r.u64()?;
    let msg_seq = r.opt(Reader::u64)?;
    let trace = if version >= 2 {
        r.opt(Reader::text)?
    } else {
        None
    };
    let (worker, started_at, history) = if version >= 3 {
        (
            r.opt(Reader::text)?,
            r.opt(Reader::i64)?,
            r.opt(Reader::text)?,
        )
    } else {
        (None, None, None)
    };
    let (keep_ms, expires_at) = if version >= 4 {
        (r.opt(Reader::u64)?, r.opt(Reader::i64)?)
    } else {
        (None, None)
    };
    let node = if version >= 5 {
        r.opt(|r| {
            Some(NodeLink {
                flow: r.u64()?,
                node: r.u32()?,
            })
        })?
    } else {
        None
    };
    let n = r.u64()?;
    if n > MAX_FOLLOW_UPS {
        return None;
    }
    let mut follow_ups = Vec::new();
    for _ in 0..n {
        let id = r.u64()?;
        follow_ups.push(FollowUp {
            id,
            spec: r.spec(version)?,
        });
    }
    let payload = r.bytes()?.to_vec();
    let result = r.opt(|r| r.bytes().map(<[u8]>::to_vec))?;
    if !r.0.is_empty() {
        return None;
    }
    let mut rec = Rec {
        id,
        queue,
        handler,
        priority,
        max_attempts,
        timeout_ms,
        unique_key,
        state,
        attempts,
        reservations,
        token,
        lease_until,
        run_at,
        created_at,
        finished_at,
        error,
        dispatch,
        msg_seq,
        trace,
        follow_ups,
        worker,
        started_at,
        history,
        keep_ms,
        expires_at,
        node,
        payload_len: payload.len(),
        result_len: None,
        payload,
        result: None,
    };
    rec.set_result(result);
    Some(rec)
}

/// The fuzz tests of every decoder of this crate (docs/fuzzing.md).
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_at_their_edges() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer(Vec::new());
            w.u64(v);
            assert_eq!(Reader(&w.0).u64(), Some(v));
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX, -1_700_000_000_000] {
            let mut w = Writer(Vec::new());
            w.i64(v);
            assert_eq!(Reader(&w.0).i64(), Some(v));
        }
        // Eleven continuation bytes: too long for a u64.
        assert_eq!(Reader(&[0xff; 11]).u64(), None);
    }

    #[test]
    fn truncated_or_padded_records_are_refused() {
        let task = conveyor_core::NewTask::new("h", b"payload".to_vec());
        let now = conveyor_core::Timestamp(5);
        let rec = Rec::new(3, &Spec::of(&task, now), now);
        let bytes = encode(&rec);
        assert_eq!(decode(&bytes), Some(rec));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(decode(&padded), None);
    }

    #[test]
    fn version_4_records_read_without_workflow_nodes() {
        let task = conveyor_core::NewTask::new("h", b"p".to_vec());
        let now = conveyor_core::Timestamp(5);
        let mut rec = Rec::new(3, &Spec::of(&task, now), now);
        rec.node = Some(NodeLink {
            flow: u64::MAX,
            node: u32::MAX,
        });
        assert_eq!(
            decode(&encode(&rec)),
            Some(rec.clone()),
            "version 5 keeps it"
        );
        let back = decode(&encode_as(&rec, VERSION_4)).expect("a version 4 record reads");
        assert_eq!(back.node, None);
    }

    #[test]
    fn version_3_records_read_without_keeps() {
        let task = conveyor_core::NewTask::new("h", b"p".to_vec())
            .keep(std::time::Duration::from_secs(60));
        let now = conveyor_core::Timestamp(5);
        let mut rec = Rec::new(3, &Spec::of(&task, now), now);
        rec.follow_ups.push(FollowUp {
            id: 4,
            spec: Spec::of(&task, now),
        });
        rec.expires_at = Some(-9);
        assert_eq!(rec.keep_ms, Some(60_000));
        assert_eq!(
            decode(&encode(&rec)),
            Some(rec.clone()),
            "version 4 keeps them"
        );
        let back = decode(&encode_as(&rec, VERSION_3)).expect("a version 3 record reads");
        assert_eq!((back.keep_ms, back.expires_at), (None, None));
        assert_eq!(back.follow_ups[0].spec.keep_ms, None);
    }

    #[test]
    fn version_2_records_read_without_attempts() {
        let task = conveyor_core::NewTask::new("h", b"p".to_vec());
        let now = conveyor_core::Timestamp(5);
        let mut rec = Rec::new(3, &Spec::of(&task, now), now);
        rec.worker = Some("w".into());
        rec.started_at = Some(-4);
        rec.history = Some("[]".into());
        assert_eq!(
            decode(&encode(&rec)),
            Some(rec.clone()),
            "version 3 keeps them"
        );
        let old = encode_as(&rec, VERSION_2);
        let back = decode(&old).expect("a version 2 record reads");
        assert_eq!(
            (back.worker, back.started_at, back.history),
            (None, None, None)
        );
    }

    #[test]
    fn version_1_records_read_without_trace_contexts() {
        let ctx = conveyor_core::TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("k=v".into()),
        )
        .expect("valid");
        let task = conveyor_core::NewTask::new("h", b"p".to_vec()).trace(ctx);
        let now = conveyor_core::Timestamp(5);
        let mut rec = Rec::new(3, &Spec::of(&task, now), now);
        rec.follow_ups.push(FollowUp {
            id: 4,
            spec: Spec::of(&task, now),
        });
        assert!(rec.trace.is_some());
        assert_eq!(
            decode(&encode(&rec)),
            Some(rec.clone()),
            "version 2 keeps them"
        );
        let old = encode_as(&rec, VERSION_1);
        assert_eq!(old[0], VERSION_1);
        let back = decode(&old).expect("a version 1 record reads");
        assert_eq!(back.trace, None);
        assert_eq!(back.follow_ups[0].spec.trace, None);
        rec.trace = None;
        rec.follow_ups[0].spec.trace = None;
        assert_eq!(back, rec);
    }
}
