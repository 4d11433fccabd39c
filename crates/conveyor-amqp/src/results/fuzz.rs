//! Fuzz tests (proptest, stable Rust) of what this crate decodes from data
//! it did not write itself: a delivered message's properties and headers
//! (anyone with access to the queue may publish one, `message.rs`), a
//! record read back from the Redis result store (`results.rs`), and the
//! backend URL (`scheme.rs`). The properties: no panic, and decode(encode(x))
//! == x for a message and for a result record.
//!
//! A CI run is a few hundred cases per target; `CONVEYOR_FUZZ_SECS=N` runs
//! each target for N seconds instead (docs/fuzzing.md).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use conveyor_core::{TaskId, TaskState, Timestamp, TraceContext};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

use crate::message::TaskMessage;

fn trace() -> impl Strategy<Value = Option<TraceContext>> {
    prop::option::of(
        (
            "[0-9a-f]{31}[1-9a-f]",
            "[1-9a-f][0-9a-f]{15}",
            prop::option::of("[ -~]{1,30}"),
        )
            .prop_map(|(t, s, st)| TraceContext::new(format!("00-{t}-{s}-01"), st).unwrap()),
    )
}

fn message() -> impl Strategy<Value = TaskMessage> {
    (
        any::<u64>(),
        "\\PC{0,12}",
        "\\PC{0,12}",
        raw_bytes(32),
        (any::<u32>(), 1..=u32::MAX),
        prop::option::of(0..=i64::MAX as u64),
        (any::<i64>(), any::<i64>()),
        prop::option::of("\\PC{0,40}"),
        trace(),
    )
        .prop_map(
            |(
                id,
                queue,
                handler,
                payload,
                (attempts, max_attempts),
                timeout,
                (e, d),
                error,
                trace,
            )| {
                TaskMessage {
                    id: TaskId(id),
                    queue,
                    handler,
                    payload,
                    attempts,
                    max_attempts,
                    timeout: timeout.map(Duration::from_millis),
                    enqueued_at: Timestamp(e),
                    due_at: Timestamp(d),
                    error,
                    trace,
                }
            },
        )
}

/// Any header value a publisher could send.
fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    prop_oneof![
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f64>().prop_map(AMQPValue::Double),
        "\\PC{0,20}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
        raw_bytes(40).prop_map(|b| AMQPValue::LongString(LongString::from(b))),
        "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"
            .prop_map(|s| AMQPValue::LongString(LongString::from(s.into_bytes()))),
        Just(AMQPValue::Void),
    ]
}

const HEADERS: &[&str] = &[
    "conveyor-handler",
    "conveyor-queue",
    "conveyor-attempts",
    "conveyor-max-attempts",
    "conveyor-timeout-ms",
    "conveyor-enqueued-at",
    "conveyor-due-at",
    "conveyor-error",
    "traceparent",
    "tracestate",
    "x-death",
];

/// A valid message's properties with some headers replaced, removed or
/// added, and maybe its message id changed.
fn properties() -> impl Strategy<Value = BasicProperties> {
    (
        message(),
        prop::collection::vec(
            (
                prop::sample::select(HEADERS),
                prop::option::of(amqp_value()),
            ),
            0..6,
        ),
        prop::option::of(prop::option::of("[0-9a-z -]{0,22}")),
    )
        .prop_map(|(m, changes, id)| {
            let p = m.properties();
            let mut h: FieldTable = p.headers().clone().unwrap_or_default();
            for (name, value) in changes {
                match value {
                    Some(v) => {
                        h.insert(ShortString::from(name.to_string()), v);
                    }
                    None => {
                        let mut kept = FieldTable::default();
                        for (k, v) in h.inner() {
                            if k.as_str() != name {
                                kept.insert(k.clone(), v.clone());
                            }
                        }
                        h = kept;
                    }
                }
            }
            let p = p.with_headers(h);
            match id {
                None => p,
                Some(None) => {
                    BasicProperties::default().with_headers(p.headers().clone().unwrap_or_default())
                }
                Some(Some(id)) => p.with_message_id(ShortString::from(id)),
            }
        })
}

#[test]
fn fuzz_message() {
    fuzz("amqp message: round trip", 1_000, message(), |m| {
        let back = TaskMessage::decode(&m.properties(), m.payload.clone());
        prop_assert_eq!(back, Ok(m));
        Ok(())
    });
    fuzz(
        "amqp message: decode",
        3_000,
        (properties(), raw_bytes(16)),
        |(p, payload)| {
            match TaskMessage::decode(&p, payload.clone()) {
                Ok(m) => {
                    prop_assert_eq!(m.payload, payload);
                    prop_assert!(m.max_attempts >= 1);
                }
                // The payload comes back to be dead-lettered as it came.
                Err((_, back)) => prop_assert_eq!(back, payload),
            }
            Ok(())
        },
    );
}

fn result_record() -> impl Strategy<Value = conveyor_core::TaskRecord> {
    (
        message(),
        prop::sample::select(TaskState::ALL.to_vec()),
        any::<u32>(),
        any::<i64>(),
        prop::option::of(raw_bytes(16)),
    )
        .prop_map(|(m, state, attempts, now, result)| {
            let mut r = super::record(&m, state, attempts, Timestamp(now));
            r.result = result;
            r
        })
}

fn hash_of(r: &conveyor_core::TaskRecord) -> HashMap<String, Vec<u8>> {
    super::fields(r)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[test]
fn fuzz_result_record() {
    fuzz(
        "amqp result record: round trip",
        1_000,
        result_record(),
        |r| {
            let back =
                super::parse(r.id, hash_of(&r)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, r);
            Ok(())
        },
    );
    let field = prop::sample::select(vec![
        "queue",
        "handler",
        "state",
        "payload",
        "attempts",
        "max_attempts",
        "run_at",
        "created_at",
        "result",
        "error",
        "finished_at",
        "trace",
        "other",
    ]);
    let hash = (
        result_record(),
        prop::collection::vec((field, prop::option::of((raw_bytes(24), edits()))), 0..6),
    )
        .prop_map(|(r, changes)| {
            let mut h = hash_of(&r);
            for (name, change) in changes {
                match change {
                    None => {
                        h.remove(name);
                    }
                    Some((fresh, edits)) => {
                        let v = h.remove(name).unwrap_or(fresh);
                        h.insert(name.to_string(), mutate(v, &edits));
                    }
                }
            }
            h
        });
    fuzz("amqp result record: decode", 3_000, hash, |h| {
        let _ = super::parse(TaskId(1), h);
        Ok(())
    });
}

#[test]
fn fuzz_url() {
    fuzz(
        "amqp url: target",
        2_000,
        url_input_for(&["amqp", "amqps", "AMQP", "nats"]),
        |url| {
            let _ = crate::scheme::target(&url);
            Ok(())
        },
    );
}

/// A URL-ish text with one of `schemes`: user info, host, path, query and
/// fragment, each maybe odd.
fn shaped_url(schemes: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(schemes),
        prop_oneof![Just("://"), Just(":"), Just(":///"), Just("//")],
        prop::option::of((
            "[a-z:%@]{0,8}",
            prop::option::of("[A-Za-z0-9:@%/?#=&]{0,12}"),
        )),
        "[a-z0-9.:\\[\\]/@-]{0,20}",
        prop::collection::vec(
            (
                prop_oneof![
                    Just("prefix".to_string()),
                    Just("scripts".to_string()),
                    Just("protocol".to_string()),
                    Just("ca".to_string()),
                    Just("cert".to_string()),
                    Just("key".to_string()),
                    Just("schema".to_string()),
                    Just("sslmode".to_string()),
                    Just("results".to_string()),
                    Just("hold".to_string()),
                    Just("lease".to_string()),
                    Just("replicas".to_string()),
                    Just("max_bytes".to_string()),
                    Just("password".to_string()),
                    "[a-z_?=#&]{0,10}",
                ],
                prop::option::of("[a-z0-9:/@=?#&%.-]{0,16}"),
            ),
            0..5,
        ),
        prop::option::of("[a-z#?&=]{0,6}"),
    )
        .prop_map(|(scheme, sep, user, host, params, fragment)| {
            let mut url = format!("{scheme}{sep}");
            if let Some((name, password)) = user {
                url.push_str(&name);
                if let Some(p) = password {
                    url.push(':');
                    url.push_str(&p);
                }
                url.push('@');
            }
            url.push_str(&host);
            for (i, (k, v)) in params.iter().enumerate() {
                url.push(if i == 0 { '?' } else { '&' });
                url.push_str(k);
                if let Some(v) = v {
                    url.push('=');
                    url.push_str(v);
                }
            }
            if let Some(f) = fragment {
                url.push('#');
                url.push_str(&f);
            }
            url
        })
}

/// URL inputs: anything at all, URL-shaped text, and URL-shaped text
/// mutated.
fn url_input_for(schemes: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        raw_bytes(300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        shaped_url(schemes),
        (shaped_url(schemes), edits()).prop_map(|(u, e)| String::from_utf8_lossy(&mutate(
            u.into_bytes(),
            &e
        ))
        .into_owned()),
    ]
}

// ---- The fuzz runner and the byte mutator (the same in every crate's
// ---- fuzz tests: docs/fuzzing.md).

/// Runs `test` over `strategy`: `cases` cases (the CI run), or, with
/// `CONVEYOR_FUZZ_SECS=N` set, rounds of `cases` fresh random cases until N
/// seconds have passed (the long run). A failure panics with the case,
/// shrunk, and the number of cases that passed before it.
fn fuzz<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let deadline = std::env::var("CONVEYOR_FUZZ_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut ran: u64 = 0;
    loop {
        let mut config = Config::with_cases(cases);
        config.failure_persistence = None;
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz {name}: failed after {ran}+ cases: {e}");
        }
        ran += u64::from(cases);
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!("fuzz {name}: {ran} cases, no failure");
}

/// One edit of a valid input: what a corrupt store, a buggy peer or an
/// attacker would do to it.
#[derive(Debug, Clone)]
enum Edit {
    /// Byte at (position mod length) replaced.
    Set(usize, u8),
    /// A byte inserted.
    Insert(usize, u8),
    /// Bytes inserted: a chunk known to upset parsers.
    Splice(usize, Vec<u8>),
    /// A byte removed.
    Remove(usize),
    /// Cut to (position mod (length + 1)) bytes.
    Truncate(usize),
}

/// Bytes that upset parsers: separators, signs, big numbers, varint
/// continuation bytes, invalid UTF-8.
fn nasty_chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"0".to_vec()),
        Just(b"18446744073709551615".to_vec()),
        Just(b"9223372036854775807".to_vec()),
        Just(b"99999999999999999999999".to_vec()),
        Just(vec![0xff; 10]),
        Just(vec![0x80; 12]),
        Just(b"\xff\xfe".to_vec()),
        Just(b"{\"".to_vec()),
        Just(b"\"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"=".to_vec()),
        Just(b"&".to_vec()),
        Just(b"@".to_vec()),
        Just(b"%".to_vec()),
        Just(b"\\u0000".to_vec()),
        prop::collection::vec(any::<u8>(), 1..8),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Set(at, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), nasty_chunk()).prop_map(|(at, c)| Edit::Splice(at, c)),
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..6)
}

/// `input` with `edits` applied.
fn mutate(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = input.len();
        match e {
            Edit::Set(at, b) if len > 0 => input[at % len] = *b,
            Edit::Set(..) => input.push(0),
            Edit::Insert(at, b) => input.insert(at % (len + 1), *b),
            Edit::Splice(at, chunk) => {
                let at = at % (len + 1);
                input.splice(at..at, chunk.iter().copied());
            }
            Edit::Remove(at) if len > 0 => {
                input.remove(at % len);
            }
            Edit::Remove(_) => {}
            Edit::Truncate(at) => input.truncate(at % (len + 1)),
        }
    }
    input
}

/// Arbitrary bytes, up to `max` of them (inputs are capped: a decoder may
/// spend what its input holds, never more).
fn raw_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}
