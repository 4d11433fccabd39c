//! A task's fields that never change, packed by the client into one hash
//! field, `d`: its max attempts, created-at, timeout, trace context and
//! payload.
//!
//! The scripts pass `d` through untouched on the hot paths (enqueue writes
//! it at the end of the task's data record, reserve answers that record:
//! see [`crate::records`]): in Redis every field and string a script
//! handles costs it, in the server's one thread. The rare paths that need a
//! part of it (finish's and recover's max attempts, stats's created-at)
//! read the header with one `string.match`.
//!
//! The form, a header of decimal numbers and then the bytes:
//! `1 MAX_ATTEMPTS CREATED_AT TIMEOUT_MS TRACE_LEN TRACE` followed directly
//! by the payload. `1` is the form's version; `TIMEOUT_MS` is empty for
//! none; `TRACE` is the stored trace context (see
//! [`TraceContext::encode`]), `TRACE_LEN` bytes long, empty for none.
//! A task with a keep of its own (how long it is kept once finished) takes
//! version `2`, which has `KEEP_MS` after `TIMEOUT_MS`:
//! `2 MAX_ATTEMPTS CREATED_AT TIMEOUT_MS KEEP_MS TRACE_LEN TRACE`. A task
//! without one keeps version `1`, so a reader of an older conveyor reads
//! it, and refuses the other by its version rather than misreading it.
//!
//! Tasks stored before this form have the five as fields of their own
//! (`ma`, `ca`, `to`, `tc`, `p`); every reader reads both.

use std::time::Duration;

use conveyor_core::{Error, NewTask, Timestamp, TraceContext};

use crate::reply::bad;

/// The version of the form without a keep, its first header item.
const VERSION: &str = "1";

/// The version of the form with a keep.
const VERSION_KEEP: &str = "2";

/// A task's packed fields, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed {
    /// How many attempts the task may take.
    pub(crate) max_attempts: u32,
    /// When it was enqueued.
    pub(crate) created_at: Timestamp,
    /// Its own timeout per attempt, if it has one.
    pub(crate) timeout: Option<Duration>,
    /// How long it is kept once finished, if it says.
    pub(crate) keep: Option<Duration>,
    /// Its trace context, if it has one (read leniently, as
    /// [`TraceContext::from_stored`] reads: one that does not parse is none).
    pub(crate) trace: Option<TraceContext>,
    /// Its payload.
    pub(crate) payload: Vec<u8>,
}

/// The `d` field of task `t`, enqueued at `now`.
pub(crate) fn pack(t: &NewTask, now: Timestamp) -> Vec<u8> {
    pack_fields(
        t.max_attempts,
        now,
        t.timeout,
        t.keep,
        t.trace.as_ref(),
        &t.payload,
    )
}

/// The `d` field of a task with these fields.
pub(crate) fn pack_fields(
    max_attempts: u32,
    created_at: Timestamp,
    timeout: Option<Duration>,
    keep: Option<Duration>,
    trace: Option<&TraceContext>,
    payload: &[u8],
) -> Vec<u8> {
    let trace = trace.map(TraceContext::encode).unwrap_or_default();
    let timeout = timeout
        .map(|d| crate::backend::millis(d).to_string())
        .unwrap_or_default();
    let header = match keep {
        None => format!(
            "{VERSION} {max_attempts} {} {timeout} {} ",
            created_at.as_millis(),
            trace.len()
        ),
        Some(keep) => format!(
            "{VERSION_KEEP} {max_attempts} {} {timeout} {} {} ",
            created_at.as_millis(),
            crate::backend::millis(keep),
            trace.len()
        ),
    };
    let mut d = Vec::with_capacity(header.len() + trace.len() + payload.len());
    d.extend_from_slice(header.as_bytes());
    d.extend_from_slice(trace.as_bytes());
    d.extend_from_slice(payload);
    d
}

/// Task `id`'s `d` field, decoded; an error naming the task and what is
/// wrong when it does not decode.
pub(crate) fn unpack(id: u64, mut d: Vec<u8>) -> Result<Packed, Error> {
    let wrong = |what: &str| bad(format!("task {id}: field d: {what}"));
    // The version and the header items, each ended by a space.
    let mut rest: &[u8] = &d;
    let version = take(&mut rest).ok_or_else(|| wrong("no header"))?;
    let with_keep = if version == VERSION.as_bytes() {
        false
    } else if version == VERSION_KEEP.as_bytes() {
        true
    } else {
        return Err(wrong(&format!(
            "unknown form {:?}",
            String::from_utf8_lossy(version)
        )));
    };
    let mut item = || take(&mut rest).ok_or_else(|| wrong("a short header"));
    let (ma, ca, to) = (item()?, item()?, item()?);
    let kp = if with_keep { Some(item()?) } else { None };
    let trace_len = item()?;
    let number = |b: &[u8], name: &str| -> Result<i64, Error> {
        number(b).ok_or_else(|| wrong(&format!("{name} {:?}", String::from_utf8_lossy(b))))
    };
    let max_attempts = u32::try_from(number(ma, "max attempts")?)
        .map_err(|_| wrong("max attempts out of range"))?;
    let created_at = Timestamp(number(ca, "created at")?);
    let timeout = if to.is_empty() {
        None
    } else {
        // Read as the u64 `pack` wrote (any `Duration`'s millis, capped at
        // `u64::MAX`), not through i64: a timeout past i64::MAX ms must not
        // make the task unreadable.
        let ms = match self::number::<u64>(to) {
            Some(ms) => ms,
            None if self::number::<i64>(to).is_some() => return Err(wrong("negative timeout")),
            None => return Err(wrong(&format!("timeout {:?}", String::from_utf8_lossy(to)))),
        };
        Some(Duration::from_millis(ms))
    };
    let keep = match kp {
        None => None,
        Some(kp) => Some(Duration::from_millis(self::number::<u64>(kp).ok_or_else(
            || wrong(&format!("keep {:?}", String::from_utf8_lossy(kp))),
        )?)),
    };
    let trace_len =
        usize::try_from(number(trace_len, "trace length")?).map_err(|_| wrong("trace length"))?;
    if trace_len > rest.len() {
        return Err(wrong("trace longer than the field"));
    }
    let trace = std::str::from_utf8(&rest[..trace_len]).map_err(|_| wrong("trace not UTF-8"))?;
    let trace = TraceContext::from_stored(Some(trace).filter(|t| !t.is_empty()));
    let start = d.len() - rest.len() + trace_len;
    // The payload is the field's tail: moved to the front, not copied anew.
    d.drain(..start);
    Ok(Packed {
        max_attempts,
        created_at,
        timeout,
        keep,
        trace,
        payload: d,
    })
}

/// The decimal number `b` holds, if it holds one.
pub(crate) fn number<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// The item before the next space of `rest`, which then starts after it.
pub(crate) fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let at = rest.iter().position(|&b| b == b' ')?;
    let (item, after) = rest.split_at(at);
    *rest = &after[1..];
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> NewTask {
        NewTask::new("h", b"pay load \x00\xff 1 2".to_vec())
    }

    #[test]
    fn round_trip_plain() {
        let t = task();
        let d = pack(&t, Timestamp(1_700_000_000_123));
        assert!(d.starts_with(b"1 "));
        let p = unpack(7, d).expect("decodes");
        assert_eq!(p.max_attempts, t.max_attempts);
        assert_eq!(p.created_at, Timestamp(1_700_000_000_123));
        assert_eq!(p.timeout, None);
        assert_eq!(p.keep, None);
        assert_eq!(p.trace, None);
        assert_eq!(p.payload, t.payload);
    }

    #[test]
    fn round_trip_with_timeout_trace_and_empty_payload() {
        let trace = TraceContext::from_stored(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nk=v w",
        ))
        .expect("trace");
        let t = NewTask::new("h", Vec::new())
            .timeout(Duration::from_millis(2_500))
            .max_attempts(9)
            .keep(Duration::from_secs(90))
            .trace(trace.clone());
        let d = pack(&t, Timestamp(-5));
        assert!(d.starts_with(b"2 9 -5 2500 90000 "), "{d:?}");
        let p = unpack(7, d).expect("decodes");
        assert_eq!(p.max_attempts, 9);
        assert_eq!(p.keep, Some(Duration::from_secs(90)));
        assert_eq!(p.created_at, Timestamp(-5));
        assert_eq!(p.timeout, Some(Duration::from_millis(2_500)));
        assert_eq!(p.trace, Some(trace));
        assert!(p.payload.is_empty());
    }

    #[test]
    fn bad_fields_are_errors_naming_the_task() {
        for (d, says) in [
            (&b""[..], "no header"),
            (b"3 3 4  0 x", "unknown form"),
            (b"2 3 4  0 x", "short header"),
            (b"2 3 4  0 x ", "trace length"),
            (b"2 3 4  x 0 ", "keep"),
            (b"1 3 4 ", "short header"),
            (b"1 x 4  0 ", "max attempts"),
            (b"1 -1 4  0 ", "max attempts out of range"),
            (b"1 3 y  0 ", "created at"),
            (b"1 3 4 z 0 ", "timeout"),
            (b"1 3 4 -2 0 ", "negative timeout"),
            (b"1 3 4  q ", "trace length"),
            (b"1 3 4  9 abc", "trace longer"),
            (b"1 3 4  2 \xff\xfepayload", "not UTF-8"),
        ] {
            let err = unpack(42, d.to_vec()).expect_err("does not decode");
            let text = err.to_string();
            assert!(
                text.contains("task 42: field d") && text.contains(says),
                "{text}"
            );
        }
    }
}
