//! A task's two records, as `reserve` answers them: its field in the
//! namespace's `tasks:state` hash and its field in `tasks:data`.
//!
//! The scripts write them (see "Task records" in `lua/common/records.lua`; the
//! layout is described in `docs/redis.md`):
//!
//! - the state record, `S TK FA A RA AT`: state code, lease token,
//!   finished-at (empty before the task finishes), attempts, run-at and, to
//!   its end, the latest attempt's `START WORKER` (empty before the first
//!   attempt);
//! - the data record, written once at enqueue: four bytes, the byte lengths
//!   of the queue, the handler, the unique key plus one and the ordering key
//!   plus one (0: none), then those four strings back to back, then `PR RA `
//!   (the priority and the run-at it was enqueued with), then `d` (see
//!   [`crate::packed`]). When a part is too
//!   long for a byte the first byte is 255 and the four lengths follow in
//!   decimal, `LQ LH LU LO ` (`-1`: none).
//!
//! Nothing here panics on what it reads: a record that does not decode is an
//! error naming the task.

use conveyor_core::{Error, Timestamp};

use crate::packed::{number, take, unpack, Packed};
use crate::reply::bad;

/// What `reserve` needs of a state record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateRecord {
    /// The lease token.
    pub(crate) token: u64,
    /// Attempts started, this one included.
    pub(crate) attempts: u32,
    /// When the task was due.
    pub(crate) run_at: Timestamp,
}

/// The parts of a data record `reserve` answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataRecord {
    /// The task's queue.
    pub(crate) queue: String,
    /// The task's handler.
    pub(crate) handler: String,
    /// The task's ordering key, if it has one.
    pub(crate) ordering_key: Option<String>,
    /// The fields packed into `d`.
    pub(crate) packed: Packed,
}

/// The state record of task `id`.
pub(crate) fn state(id: u64, record: &[u8]) -> Result<StateRecord, Error> {
    let wrong = |what: &str| bad(format!("task {id}: state record: {what}"));
    let mut rest = record;
    let mut item = |name: &str| take(&mut rest).ok_or_else(|| wrong(&format!("no {name}")));
    let _state = item("state")?;
    let token = item("token")?;
    let _finished_at = item("finished-at")?;
    let (attempts, run_at) = (item("attempts")?, item("run-at")?);
    Ok(StateRecord {
        token: number(token).ok_or_else(|| wrong("bad token"))?,
        attempts: number(attempts).ok_or_else(|| wrong("bad attempts"))?,
        run_at: Timestamp(number(run_at).ok_or_else(|| wrong("bad run-at"))?),
    })
}

/// The first byte of a data record whose lengths follow in decimal.
const LONG_FORM: u8 = 255;

/// The data record of task `id`.
pub(crate) fn data(id: u64, mut record: Vec<u8>) -> Result<DataRecord, Error> {
    let wrong = |what: &str| bad(format!("task {id}: data record: {what}"));
    let mut rest: &[u8] = &record;
    // The lengths of the queue and handler, and of the keys plus one.
    let mut lengths = [0usize; 4];
    if rest.first() == Some(&LONG_FORM) {
        rest = &rest[1..];
        for (n, name) in lengths
            .iter_mut()
            .zip(["queue", "handler", "unique key", "ordering key"])
        {
            let len: i64 = take(&mut rest)
                .and_then(number)
                .ok_or_else(|| wrong(&format!("bad {name} length")))?;
            let plus_one = if name.ends_with("key") {
                len.checked_add(1)
            } else {
                Some(len)
            };
            *n = plus_one
                .and_then(|l| usize::try_from(l).ok())
                .ok_or_else(|| wrong(&format!("bad {name} length")))?;
        }
    } else {
        let Some((head, after)) = rest.split_first_chunk::<4>() else {
            return Err(wrong("no lengths"));
        };
        lengths = head.map(usize::from);
        rest = after;
    }
    let mut part = |len: usize, name: &str| -> Result<String, Error> {
        if len > rest.len() {
            return Err(wrong(&format!("{name} longer than the record")));
        }
        let (bytes, after) = rest.split_at(len);
        rest = after;
        String::from_utf8(bytes.to_vec()).map_err(|_| wrong(&format!("{name} not UTF-8")))
    };
    let [lq, lh, lu, lo] = lengths;
    let queue = part(lq, "queue")?;
    let handler = part(lh, "handler")?;
    if lu > 0 {
        part(lu - 1, "unique key")?;
    }
    let ordering_key = if lo > 0 {
        Some(part(lo - 1, "ordering key")?)
    } else {
        None
    };
    take(&mut rest)
        .and_then(number::<i64>)
        .ok_or_else(|| wrong("bad priority"))?;
    take(&mut rest)
        .and_then(number::<i64>)
        .ok_or_else(|| wrong("bad run-at"))?;
    let start = record.len() - rest.len();
    // `d` is the record's tail: moved to the front, not copied anew.
    record.drain(..start);
    Ok(DataRecord {
        queue,
        handler,
        ordering_key,
        packed: unpack(id, record)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use conveyor_core::NewTask;

    fn d() -> Vec<u8> {
        crate::packed::pack(
            &NewTask::new("h", b"pay load 1 2".to_vec()),
            Timestamp(1_700),
        )
    }

    #[test]
    fn state_records_decode() {
        let s = state(7, b"2 3  1 1700000000123 1700000000500 host 1").expect("decodes");
        assert_eq!(
            s,
            StateRecord {
                token: 3,
                attempts: 1,
                run_at: Timestamp(1_700_000_000_123)
            }
        );
        assert_eq!(
            state(7, b"4 3 9 1 -5 ").expect("decodes").run_at,
            Timestamp(-5)
        );
    }

    /// A data record as the scripts write it (short form).
    fn record(q: &str, h: &str, uk: Option<&str>, ok: Option<&str>) -> Vec<u8> {
        let plus_one = |k: Option<&str>| k.map_or(0, |k| k.len() as u8 + 1);
        let mut r = vec![q.len() as u8, h.len() as u8, plus_one(uk), plus_one(ok)];
        for s in [q, h, uk.unwrap_or(""), ok.unwrap_or("")] {
            r.extend_from_slice(s.as_bytes());
        }
        r.extend_from_slice(b"-5 1700 ");
        r.extend_from_slice(&d());
        r
    }

    #[test]
    fn data_records_decode_with_and_without_keys() {
        // Lengths are in bytes, and keys may hold spaces.
        let key = "λ k";
        let got = data(7, record("default", "email", Some("u"), Some(key))).expect("decodes");
        assert_eq!(
            (got.queue.as_str(), got.handler.as_str()),
            ("default", "email")
        );
        assert_eq!(got.ordering_key.as_deref(), Some(key));
        assert_eq!(got.packed.payload, b"pay load 1 2");

        let got = data(8, record("q", "h h", Some(""), None)).expect("decodes");
        assert_eq!((got.queue.as_str(), got.handler.as_str()), ("q", "h h"));
        assert_eq!(got.ordering_key, None);

        // The long form: a part too long for a byte.
        let long = "k".repeat(300);
        let mut r = format!("\u{0}7 1 -1 300 defaulth{long}0 1700 ").into_bytes();
        r[0] = LONG_FORM;
        r.extend_from_slice(&d());
        let got = data(9, r).expect("decodes");
        assert_eq!(got.ordering_key.as_deref(), Some(long.as_str()));
        assert_eq!(got.packed.payload, b"pay load 1 2");
    }

    #[test]
    fn bad_records_are_errors_naming_the_task() {
        for (r, says) in [
            (&b"2 x  1 5 "[..], "bad token"),
            (b"2 3  -1 5 ", "bad attempts"),
            (b"2 3  1 ", "no run-at"),
        ] {
            let text = state(42, r).expect_err("does not decode").to_string();
            assert!(
                text.contains("task 42: state record") && text.contains(says),
                "{text}"
            );
        }
        for (r, says) in [
            (&b"\x01\x01"[..], "no lengths"),
            (b"\x01\x01\x00\x00", "queue longer"),
            (b"\xff1 x -1 -1 qh0 5 ", "bad handler length"),
            (b"\xff1 1 -1 -2 qh0 5 ", "bad ordering key length"),
            (b"\x01\x01\x00\x00qhz 5 ", "bad priority"),
            (b"\x01\x01\x00\x00qh0 ", "bad run-at"),
            (b"\x01\x01\x00\x00\xffh0 5 ", "queue not UTF-8"),
            (b"\x01\x01\x00\x00qh0 5 ", "field d"),
        ] {
            let text = data(42, r.to_vec())
                .expect_err("does not decode")
                .to_string();
            assert!(text.contains("task 42") && text.contains(says), "{text}");
        }
    }
}
