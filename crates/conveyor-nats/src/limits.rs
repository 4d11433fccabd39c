//! How big a task may be: its record, params and result included, is one
//! ledger entry, and one entry is one NATS message, which the server caps
//! at its `max_payload` (1 MiB by default), read from the connection's
//! server info at connect.
//!
//! A record that would not fit is never sent: the server would refuse it,
//! and a refusal that looks like a failed publish would be retried for
//! ever (the task rerunning after every lease, its record saying only
//! "lease expired"). Instead the call gets a non-transient error
//! ([`BackendErrorKind::TooLarge`]) that names the sizes:
//!
//! - `enqueue` refuses params over [`Limits::largest_params`]: what is left
//!   of the entry once the record as created is counted, less
//!   [`RUN_ROOM`], kept for what running adds (the lease, the worker's id,
//!   the history of attempts), so a task that was enqueued can be run;
//! - `finish` refuses, for that report alone, a result over
//!   [`Limits::largest_result`]: what is left of the entry once the record
//!   as completed is counted;
//! - every other write of a record that would not fit (a long error text,
//!   large follow-ups) is refused the same way, with the record's size.

use conveyor_core::{BackendErrorKind, Error, Lease, NewTask, TaskState, Transition};

use crate::backend::NatsBackend;
use crate::record::Rec;

/// Bytes of an entry kept for the headers of a write (a compare-and-set
/// names the expected revision in a header, which `max_payload` counts).
pub(crate) const HEADER_ROOM: usize = 256;

/// Bytes of an entry a new task's params leave free for what running
/// adds to its record.
pub(crate) const RUN_ROOM: usize = 4096;

/// The size limits of the server this backend talks to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The server's `max_payload`.
    pub(crate) max_payload: usize,
}

impl Limits {
    /// The largest record this server stores.
    pub(crate) fn record(self) -> usize {
        self.max_payload.saturating_sub(HEADER_ROOM)
    }

    /// The largest params `rec` (a record as created, its params empty)
    /// may carry.
    pub(crate) fn largest_params(self, rec: &Rec) -> usize {
        let base = crate::wire::encode(rec).len();
        largest_field(base, self.record().saturating_sub(RUN_ROOM))
    }

    /// The largest result `rec` (a record as completed, its result empty
    /// but present) may carry.
    pub(crate) fn largest_result(self, rec: &Rec) -> usize {
        let base = crate::wire::encode(rec).len();
        largest_field(base, self.record())
    }

    /// `Ok` when `rec`, `len` bytes encoded, fits; else the error that
    /// names the sizes.
    pub(crate) fn check(self, rec: &Rec, len: usize) -> Result<(), Error> {
        if len <= self.record() {
            return Ok(());
        }
        let mut what = format!("task {}'s record would be {len} bytes", rec.id);
        match &rec.result {
            Some(r) => what += &format!(" with its result of {} bytes", r.len()),
            None => what += &format!(" with its params of {} bytes", rec.payload.len()),
        }
        Err(Error::backend(
            BackendErrorKind::TooLarge,
            format!("nats: {what}; {}", self.over()),
        ))
    }

    /// The end of every refusal: the limit and where it comes from.
    pub(crate) fn over(self) -> String {
        format!(
            "this NATS server stores at most {} bytes per record (its max_payload of {} bytes less {HEADER_ROOM} for headers)",
            self.record(),
            self.max_payload
        )
    }
}

impl NatsBackend {
    /// The server's `max_payload` as it said at connect: the most bytes
    /// one message, and so one task's record, may hold.
    pub fn max_payload(&self) -> usize {
        self.inner.ledger.limits.max_payload
    }

    /// The largest params `task` may carry (its own params aside): an
    /// enqueue with more is refused with a non-transient error naming both
    /// sizes. It is the server's `max_payload`, less what the task's record
    /// takes besides (its queue, handler, unique key and trace context)
    /// and room for what running adds to it.
    pub fn max_params(&self, task: &NewTask) -> usize {
        self.largest_params(task)
    }

    /// The largest result a completion of `lease` could store now: a
    /// finish with more is refused, for that report alone, with a
    /// non-transient error naming both sizes. `None` when the lease is no
    /// longer the task's.
    pub async fn max_result(&self, lease: &Lease) -> Result<Option<usize>, Error> {
        let Some((mut rec, _)) = self.inner.ledger.get(lease.id.0).await? else {
            return Ok(None);
        };
        if rec.state() != TaskState::Running || rec.token != lease.token {
            return Ok(None);
        }
        // The record as `finish` would write it, with an empty result.
        rec.lease_until = None;
        rec.follow_ups.clear();
        rec.apply(Transition::Complete)?;
        rec.error = None;
        // Its expiry as its own keep makes it (a report carrying its
        // handler's retention adds a few bytes to a task without one).
        rec.finished(self.now(), None);
        rec.set_result(Some(Vec::new()));
        Ok(Some(self.inner.ledger.limits.largest_result(&rec)))
    }
}

/// Bytes a length takes before its bytes (a varint).
fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

/// The longest field that fits within `limit`, given `base`, the length of
/// the record with that field empty (its length then takes one byte).
fn largest_field(base: usize, limit: usize) -> usize {
    let fixed = base.saturating_sub(1);
    let total = |x: usize| fixed + varint_len(x) + x;
    let mut x = limit.saturating_sub(fixed + varint_len(limit));
    while total(x + 1) <= limit {
        x += 1;
    }
    while x > 0 && total(x) > limit {
        x -= 1;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(16_384), 3);
        // A record of 10 bytes with an empty field: 9 fixed, 1 for its length.
        let x = largest_field(10, 1000);
        assert_eq!(9 + varint_len(x) + x, 1000);
        assert_eq!(largest_field(10, 5), 0);
    }

    #[test]
    fn the_largest_fields_fit_exactly() {
        let limits = Limits {
            max_payload: 1 << 20,
        };
        let spec = crate::record::Spec::of(
            &conveyor_core::NewTask::new("h", Vec::new()),
            conveyor_core::Timestamp(1),
        );
        let mut rec = Rec::new(u64::MAX, &spec, conveyor_core::Timestamp(1));
        let p = limits.largest_params(&rec);
        rec.payload = vec![0; p];
        assert_eq!(crate::wire::encode(&rec).len(), limits.record() - RUN_ROOM);
        rec.payload.clear();
        rec.set_result(Some(Vec::new()));
        let r = limits.largest_result(&rec);
        rec.set_result(Some(vec![0; r]));
        let len = crate::wire::encode(&rec).len();
        assert_eq!(len, limits.record());
        assert!(limits.check(&rec, len).is_ok());
        rec.set_result(Some(vec![0; r + 1]));
        let len = crate::wire::encode(&rec).len();
        let e = limits.check(&rec, len).expect_err("over");
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(text.contains(&format!("{}", r + 1)), "{text}");
        assert!(text.contains("1048576"), "{text}");
    }
}
