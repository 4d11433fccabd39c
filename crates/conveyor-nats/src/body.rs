//! The payload of ready and schedule messages.
//!
//! Its first line is `"<id> <dispatch>"`: the task and which dispatch of it
//! the message is. That is all a schedule entry, and most ready messages,
//! hold. The first ready message of a task an enqueue just created also
//! carries a **copy of the record as created**, with the revision it was
//! written at (`"<id> <dispatch>\n<revision>\n<record>"`), when the record
//! is small ([`COPY_LIMIT`]).
//!
//! With it a reserver skips the ledger read: it decides on the copy and
//! writes its compare-and-set at that revision, which lands only when the
//! record is still exactly the copy (so the decision was made on the
//! record itself, as when read). When the record changed since, the write
//! is refused and the reserver reads it and decides as before; fencing is
//! unchanged. A copy is used only on a first delivery and only when it
//! says "take" (anything else is decided on the record read), so a stale
//! copy costs one refused write at most. Only enqueue writes copies: every
//! other publish comes before its record's write (publish first, write
//! second), when the revision is not known yet.

use bytes::{BufMut, Bytes, BytesMut};

use crate::ledger::Versioned;
use crate::record::Rec;

/// Largest encoded record copied into its first ready message, in bytes
/// (a bigger one doubles what the stream stores for little gain).
pub(crate) const COPY_LIMIT: usize = 4_096;

/// The payload of message `dispatch` of task `id`, with `copy` (the
/// record's revision and encoding) when given.
pub(crate) fn body(id: u64, dispatch: u64, copy: Option<&(u64, Bytes)>) -> Bytes {
    let head = format!("{id} {dispatch}");
    let Some((rev, rec)) = copy else {
        return head.into();
    };
    let mut out = BytesMut::with_capacity(head.len() + 24 + rec.len());
    out.put_slice(head.as_bytes());
    out.put_slice(format!("\n{rev}\n").as_bytes());
    out.put_slice(rec);
    out.freeze()
}

/// `(id, dispatch)` from a payload's first line.
pub(crate) fn parse_body(payload: &[u8]) -> Option<(u64, u64)> {
    let end = payload
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(payload.len());
    let text = std::str::from_utf8(&payload[..end]).ok()?;
    let (id, d) = text.split_once(' ')?;
    Some((id.parse().ok()?, d.parse().ok()?))
}

/// The record copy a payload carries, if any (and if it decodes).
pub(crate) fn parse_copy(payload: &[u8]) -> Option<Versioned<Rec>> {
    let at = payload.iter().position(|b| *b == b'\n')?;
    let rest = &payload[at + 1..];
    let at = rest.iter().position(|b| *b == b'\n')?;
    let rev = std::str::from_utf8(&rest[..at]).ok()?.parse().ok()?;
    let rec = Rec::decode(&rest[at + 1..]).ok()?;
    Some((rec, rev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bodies_parse_and_carry_no_copy() {
        let b = body(12, 3, None);
        assert_eq!(&b[..], b"12 3");
        assert_eq!(parse_body(&b), Some((12, 3)));
        assert!(parse_copy(&b).is_none());
        assert_eq!(parse_body(b"junk"), None);
    }

    #[test]
    fn a_copy_rides_after_the_first_line() {
        let rec = b"{\"not\":\"a record\"}\nxyz";
        let b = body(7, 1, Some(&(99, Bytes::from_static(rec))));
        assert_eq!(parse_body(&b), Some((7, 1)));
        assert!(b.ends_with(rec));
        // Not a record: no copy, the reserver reads the ledger.
        assert!(parse_copy(&b).is_none());
    }

    #[test]
    fn a_record_copy_comes_back_whole() {
        let now = conveyor_core::Timestamp::now();
        let task = conveyor_core::NewTask::new("h", b"pay\nload".to_vec());
        let rec = Rec::new(5, &crate::record::Spec::of(&task, now), now);
        let b = body(5, 1, Some(&(42, rec.encode())));
        assert_eq!(parse_body(&b), Some((5, 1)));
        assert_eq!(parse_copy(&b), Some((rec, 42)));
    }
}
