//! Decoding script replies and task hashes into conveyor's records.
//!
//! Everything read back from Redis is data another process (or a person with
//! `redis-cli`) may have written, so nothing here panics: a missing field, a
//! number that does not parse or an unknown state code becomes an
//! [`Error::Backend`] that names the task and the field.

use std::collections::HashMap;
use std::fmt::{self, Display};

use conveyor_core::attempt::{decode_history, full_history, LatestAttempt};
use conveyor_core::{
    BackendError, BackendErrorKind, Error, Lease, QueueStats, Reserved, TaskId, TaskRecord,
    TaskState, Timestamp, TraceContext,
};
use redis::Value;

/// Data read back that does not fit conveyor's records.
pub(crate) fn bad(msg: impl Into<String>) -> Error {
    Error::backend(BackendErrorKind::Data, msg)
}

/// A Redis error as a store failure, saying what was being done, classified
/// and with the client's error as the source.
pub(crate) fn redis_error(what: &str, e: redis::RedisError) -> Error {
    // Our scripts refuse stored data that does not fit (`fail` in
    // lua/common/ raises "conveyor: …"): that is bad data, said in our words.
    let text = e.to_string();
    if let Some(at) = text.find("conveyor: ") {
        let why = text[at + "conveyor: ".len()..].trim_end_matches(['"', ' ', ')']);
        let message = format!("redis {what}: {why}");
        return Error::Backend(BackendError::new(BackendErrorKind::Data, message).with_source(e));
    }
    let kind = classify(&e);
    Error::Backend(BackendError::new(kind, format!("redis {what}")).with_source(e))
}

/// What kind of failure a Redis error is.
pub(crate) fn classify(e: &redis::RedisError) -> BackendErrorKind {
    use redis::{ErrorKind, ServerErrorKind};
    if e.is_timeout() {
        return BackendErrorKind::Timeout;
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        return BackendErrorKind::Unavailable;
    }
    if e.code() == Some("BUSY") {
        // A script or command still running on the server.
        return BackendErrorKind::Busy;
    }
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            // A primary demoted under it (a failover under way): the
            // next primary takes the call.
            | ServerErrorKind::ReadOnly,
        ) => BackendErrorKind::Unavailable,
        ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig
        | ErrorKind::Server(ServerErrorKind::NoPerm) => {
            BackendErrorKind::Config
        }
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => BackendErrorKind::Data,
        _ => BackendErrorKind::Other,
    }
}

/// The items of an array reply.
pub(crate) fn array(v: Value, what: &str) -> Result<Vec<Value>, Error> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(bad(format!("{what}: expected an array, got {other:?}"))),
    }
}

/// The bytes of a string reply, `None` for nil.
pub(crate) fn opt_bytes(v: Value, what: impl Display + Copy) -> Result<Option<Vec<u8>>, Error> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        Value::Int(i) => Ok(Some(i.to_string().into_bytes())),
        other => Err(bad(format!("{what}: expected a string, got {other:?}"))),
    }
}

/// The bytes of a string reply that must be there.
pub(crate) fn bytes(v: Value, what: impl Display + Copy) -> Result<Vec<u8>, Error> {
    opt_bytes(v, what)?.ok_or_else(|| bad(format!("{what}: missing")))
}

/// A UTF-8 string reply.
pub(crate) fn string(v: Value, what: impl Display + Copy) -> Result<String, Error> {
    utf8(bytes(v, what)?, what)
}

fn utf8(b: Vec<u8>, what: impl Display) -> Result<String, Error> {
    String::from_utf8(b).map_err(|_| bad(format!("{what}: not UTF-8")))
}

/// An integer reply (Redis may send integers as strings).
pub(crate) fn int(v: Value, what: impl Display + Copy) -> Result<i64, Error> {
    match v {
        Value::Int(i) => Ok(i),
        other => parse(&bytes(other, what)?, what),
    }
}

fn parse<T: std::str::FromStr>(b: &[u8], what: impl Display) -> Result<T, Error> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "{what}: {:?} is not a valid number",
                String::from_utf8_lossy(b)
            ))
        })
}

/// A number of type `T` from an integer reply.
pub(crate) fn number<T: TryFrom<i64>>(v: Value, what: impl Display + Copy) -> Result<T, Error> {
    let i = int(v, what)?;
    T::try_from(i).map_err(|_| bad(format!("{what}: {i} is out of range")))
}

/// Names one field of one task in an error, formatted only when there is one
/// (a reply carries a dozen fields per task).
#[derive(Clone, Copy)]
struct Field {
    id: u64,
    /// `""` for an item of a script's reply, `"field "` for a hash field.
    kind: &'static str,
    name: &'static str,
}

impl Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}: {}{}", self.id, self.kind, self.name)
    }
}

/// Items per reserved task in `reserve.lua`'s flat reply.
const RESERVED_ITEMS: usize = 3;

/// The reserved tasks of `reserve.lua`'s flat reply, 3 items per task: id,
/// state record and data record (see [`crate::records`]).
pub(crate) fn reserved(items: Vec<Value>, lease_until: Timestamp) -> Result<Vec<Reserved>, Error> {
    if !items.len().is_multiple_of(RESERVED_ITEMS) {
        return Err(bad(format!(
            "reserve: {} reply items, not a multiple of {RESERVED_ITEMS}",
            items.len()
        )));
    }
    let n = items.len() / RESERVED_ITEMS;
    let mut out = Vec::with_capacity(n);
    let mut it = items.into_iter();
    let mut next = || it.next().ok_or_else(|| bad("reserve: short reply"));
    for _ in 0..n {
        let id: u64 = number(next()?, "reserved task id")?;
        let what = |name| Field { id, kind: "", name };
        let state = crate::records::state(id, &bytes(next()?, what("state record"))?)?;
        let data = crate::records::data(id, bytes(next()?, what("data record"))?)?;
        let packed = data.packed;
        out.push(Reserved {
            lease: Lease::new(TaskId(id), state.token),
            queue: data.queue,
            handler: data.handler,
            payload: packed.payload,
            attempt: state.attempts,
            max_attempts: packed.max_attempts,
            timeout: packed.timeout,
            ordering_key: data.ordering_key,
            enqueued_at: packed.created_at,
            due_at: state.run_at,
            lease_until,
            trace: packed.trace,
        });
    }
    Ok(out)
}

/// A task record from its hash's fields (`HGETALL`).
pub(crate) fn record(id: u64, pairs: Vec<(String, Vec<u8>)>) -> Result<TaskRecord, Error> {
    let mut f: HashMap<String, Vec<u8>> = pairs.into_iter().collect();
    let mut take = |name: &str| f.remove(name);
    let what = |name| Field {
        id,
        kind: "field ",
        name,
    };
    let need = |v: Option<Vec<u8>>, name: &'static str| {
        v.ok_or_else(|| bad(format!("task {id} has no {name} field")))
    };
    let num = |v: Option<Vec<u8>>, name: &'static str| -> Result<i64, Error> {
        parse(&need(v, name)?, what(name))
    };
    let text = |v: Option<Vec<u8>>, name: &'static str| -> Result<Option<String>, Error> {
        v.map(|b| utf8(b, what(name))).transpose()
    };
    let code = num(take("s"), "s")?;
    let state = TaskState::from_code(code)
        .ok_or_else(|| bad(format!("task {id} has an unknown state code {code}")))?;
    let narrow = |v: i64, name: &str| {
        u32::try_from(v).map_err(|_| bad(format!("task {id}: field {name} out of range: {v}")))
    };
    let attempts = narrow(num(take("a"), "a")?, "a")?;
    let finished_at = take("fa")
        .map(|b| parse(&b, what("fa")).map(Timestamp))
        .transpose()?;
    // The attempt fields read leniently: one that does not decode is no
    // history, never an unreadable task.
    let at = take("at").and_then(|b| String::from_utf8(b).ok());
    let (started_at, worker) = match at.as_deref().and_then(|a| a.split_once(' ')) {
        Some((start, worker)) => (start.parse().ok().map(Timestamp), Some(worker)),
        None => (None, None),
    };
    let stored = take("hi").and_then(|b| String::from_utf8(b).ok());
    // The fields that never change: packed into `d`, or (tasks stored
    // before it) fields of their own.
    let packed = match take("d") {
        Some(d) => crate::packed::unpack(id, d)?,
        None => crate::packed::Packed {
            payload: need(take("p"), "p")?,
            max_attempts: narrow(num(take("ma"), "ma")?, "ma")?,
            created_at: Timestamp(num(take("ca"), "ca")?),
            timeout: None,
            keep: None,
            trace: TraceContext::from_stored(text(take("tc"), "tc")?.as_deref()),
        },
    };
    let history = full_history(
        decode_history(stored.as_deref()),
        LatestAttempt {
            state,
            attempts,
            worker: worker.filter(|w| !w.is_empty()),
            started_at,
            finished_at,
        },
    );
    Ok(TaskRecord {
        id: TaskId(id),
        queue: text(Some(need(take("q"), "q")?), "q")?.unwrap_or_default(),
        handler: text(Some(need(take("h"), "h")?), "h")?.unwrap_or_default(),
        state,
        payload: packed.payload,
        priority: i32::try_from(num(take("pr"), "pr")?)
            .map_err(|_| bad(format!("task {id}: priority out of range")))?,
        attempts,
        max_attempts: packed.max_attempts,
        run_at: Timestamp(num(take("ra"), "ra")?),
        unique_key: text(take("uk"), "uk")?,
        ordering_key: text(take("ok"), "ok")?,
        result: take("r"),
        // A completed task's error field may still hold an earlier
        // attempt's (the hot completion path leaves it, to spare a write
        // per task): the history has it; the record shows none.
        error: text(take("e"), "e")?.filter(|_| state != TaskState::Completed),
        created_at: packed.created_at,
        finished_at,
        trace: packed.trace,
        keep: packed.keep,
        expires_at: take("xa")
            .map(|b| parse(&b, what("xa")).map(Timestamp))
            .transpose()?,
        history,
    })
}

/// The rows of a `stats` (or `kept_stats`) reply: per queue its name, one
/// count per state in [`TaskState::ALL`] order, and its oldest ready time
/// (nil: none).
pub(crate) fn stats_rows(v: Value) -> Result<Vec<QueueStats>, Error> {
    array(v, "stats")?
        .into_iter()
        .map(|row| {
            let mut it = array(row, "stats row")?.into_iter();
            let mut next = || it.next().ok_or_else(|| bad("stats: short row"));
            let mut qs = QueueStats {
                queue: string(next()?, "stats queue")?,
                ..QueueStats::default()
            };
            for s in TaskState::ALL {
                let n: u64 = number(next()?, "stats count")?;
                if n > 0 {
                    qs.counts.insert(s, n);
                }
            }
            qs.oldest_ready = match next()? {
                Value::Nil => None,
                v => Some(Timestamp(int(v, "stats oldest")?)),
            };
            Ok(qs)
        })
        .collect()
}

/// A task record from a flat `field, value, …` array reply.
pub(crate) fn record_from_flat(id: u64, v: Value) -> Result<TaskRecord, Error> {
    let items = array(v, "task fields")?;
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        pairs.push((string(k, "field name")?, bytes(v, "field value")?));
    }
    record(id, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fields(extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        let mut base = vec![
            ("q", "default"),
            ("h", "h"),
            ("p", "{}"),
            ("pr", "0"),
            ("s", "1"),
            ("a", "0"),
            ("ma", "3"),
            ("ra", "5"),
            ("ca", "5"),
        ];
        base.extend_from_slice(extra);
        base.into_iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_good_record_decodes() {
        let r = record(1, fields(&[("ok", "k"), ("fa", "9")])).expect("decodes");
        assert_eq!(r.state, TaskState::Available);
        assert_eq!(r.ordering_key.as_deref(), Some("k"));
        assert_eq!(r.finished_at, Some(Timestamp(9)));
    }

    #[test]
    fn attempt_fields_read_leniently() {
        // A running task (state 2): its attempt from `at`, whatever `hi` holds.
        let r = record(
            1,
            fields(&[("s", "2"), ("a", "1"), ("at", "5 h:1:ab"), ("hi", "{")]),
        )
        .expect("decodes");
        assert_eq!(r.history.len(), 1);
        assert_eq!(r.history[0].worker.as_deref(), Some("h:1:ab"));
        assert_eq!(r.history[0].started_at, Timestamp(5));
        let r = record(1, fields(&[("s", "2"), ("a", "1"), ("at", "5 ")])).expect("decodes");
        assert_eq!(r.history[0].worker, None, "no worker named");
        for bad in ["junk", "x y", ""] {
            let r = record(1, fields(&[("s", "2"), ("at", bad)])).expect("decodes");
            assert!(r.history.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn bad_data_is_an_error_not_a_panic() {
        let mut f = fields(&[]);
        f.retain(|(k, _)| k != "q");
        let data = |e: &BackendError, text: &str| {
            e.kind() == BackendErrorKind::Data && e.message().contains(text)
        };
        assert!(matches!(record(1, f), Err(Error::Backend(m)) if data(&m, "no q field")));
        let f = fields(&[("s", "42")]);
        // The later "s" wins in the map.
        assert!(
            matches!(record(1, f), Err(Error::Backend(m)) if data(&m, "unknown state code 42"))
        );
        let f = fields(&[("a", "lots")]);
        assert!(matches!(record(1, f), Err(Error::Backend(m)) if data(&m, "not a valid number")));
        assert!(reserved(vec![Value::Int(1)], Timestamp(0)).is_err());
    }

    /// `reserve.lua`'s 3 items for task 7, with `change` applied.
    fn reserved_items(change: impl FnOnce(&mut Vec<Value>)) -> Vec<Value> {
        let bulk = |s: &[u8]| Value::BulkString(s.to_vec());
        let mut items = vec![
            Value::Int(7),
            bulk(b"2 2  1 11 99 worker"),
            bulk(b"\x07\x01\x00\x04defaulthkey0 11 1 3 10 250 0 {}"),
        ];
        change(&mut items);
        items
    }

    #[test]
    fn a_reserved_reply_decodes_and_a_bad_field_is_named() {
        let tasks = reserved(reserved_items(|_| {}), Timestamp(99)).expect("decodes");
        assert_eq!(tasks.len(), 1);
        let t = &tasks[0];
        assert_eq!((t.lease.id, t.lease.token), (TaskId(7), 2));
        assert_eq!((t.queue.as_str(), t.handler.as_str()), ("default", "h"));
        assert_eq!(t.payload, b"{}");
        assert_eq!(
            (t.attempt, t.max_attempts, t.timeout),
            (1, 3, Some(Duration::from_millis(250)))
        );
        assert_eq!(t.ordering_key.as_deref(), Some("key"));
        assert_eq!(
            (t.enqueued_at, t.due_at, t.lease_until),
            (Timestamp(10), Timestamp(11), Timestamp(99))
        );
        // Each item's error names the task and what does not decode.
        for (at, value, says) in [
            (
                0,
                Value::BulkString(b"x".to_vec()),
                "reserved task id: \"x\" is not a valid number",
            ),
            (1, Value::Nil, "task 7: state record: missing"),
            (
                1,
                Value::BulkString(b"2 x  1 11 ".to_vec()),
                "task 7: state record: bad token",
            ),
            (2, Value::Nil, "task 7: data record: missing"),
            (
                2,
                Value::BulkString(b"\x07\x01\x00\x00defaulth0 11 1 -1 10  0 {}".to_vec()),
                "task 7: field d: max attempts out of range",
            ),
            (
                2,
                Value::BulkString(b"\x07\x01\x00\x02defaulth\xff0 11 1 3 10  0 {}".to_vec()),
                "task 7: data record: ordering key not UTF-8",
            ),
        ] {
            let items = reserved_items(|items| items[at] = value);
            match reserved(items, Timestamp(0)) {
                Err(Error::Backend(e)) => {
                    assert_eq!(e.kind(), BackendErrorKind::Data);
                    assert_eq!(e.message(), says);
                }
                other => panic!("item {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_packed_record_decodes_like_the_older_one() {
        let older = record(1, fields(&[("to", "250")])).expect("older layout");
        let mut f = fields(&[("d", "1 3 5 250 0 {}")]);
        f.retain(|(k, _)| !["p", "ma", "ca"].contains(&k.as_str()));
        let packed = record(1, f).expect("packed layout");
        assert_eq!(packed, older);
    }
}
