//! Fuzz tests (proptest, stable Rust) of what this crate decodes from
//! JetStream: a task record from the ledger (the binary encoding of
//! `wire.rs`, and the JSON one earlier versions wrote, `record.rs`), a
//! ready or schedule message's body and the record copy it may carry
//! (`body.rs`), and the backend URL (`scheme.rs`). The properties: no
//! panic, no allocation beyond what the input holds (every length read is
//! checked against the bytes left, and the follow-up count is capped), and
//! decode(encode(x)) == x for both record encodings.
//!
//! A CI run is a few hundred cases per target; `CONVEYOR_FUZZ_SECS=N` runs
//! each target for N seconds instead (docs/fuzzing.md).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use conveyor_core::{NewTask, Receipt, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

use crate::body::{body, parse_body, parse_copy};
use crate::record::{FollowUp, Rec, Spec};

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        text(),
        text(),
        raw_bytes(32),
        any::<i32>(),
        any::<u32>(),
        prop::option::of(any::<u64>()),
        prop::option::of(text()),
        any::<i64>(),
    )
        .prop_map(|(q, h, payload, priority, ma, timeout, uk, now)| {
            let mut t = NewTask::new(h, payload).queue(q).priority(priority);
            t.max_attempts = ma;
            t.timeout = timeout.map(Duration::from_millis);
            t.unique_key = uk;
            let mut s = Spec::of(&t, Timestamp(now));
            s.timeout_ms = timeout;
            s
        })
}

/// A record in any state, every field set or not.
fn rec() -> impl Strategy<Value = Rec> {
    (
        (
            any::<u64>(),
            spec(),
            any::<i64>(),
            -2..12i64,
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            prop::option::of(any::<i64>()),
            prop::option::of(any::<i64>()),
            prop::option::of(text()),
            any::<u64>(),
            prop::option::of(any::<u64>()),
            prop::option::of("00-[0-9a-f]{32}-[0-9a-f]{16}-01(\n[ -~]{0,20})?"),
        ),
        (
            prop::option::of(text()),
            prop::option::of(any::<i64>()),
            prop::option::of("\\PC{0,60}"),
            prop::collection::vec((any::<u64>(), spec()), 0..3),
            prop::option::of(raw_bytes(32)),
        ),
    )
        .prop_map(
            |(
                (id, spec, now, state, attempts, reservations, token),
                (lease_until, finished_at, error, dispatch, msg_seq, trace),
                (worker, started_at, history, follow_ups, result),
            )| {
                let mut r = Rec::new(id, &spec, Timestamp(now));
                r.state = state;
                r.attempts = attempts;
                r.reservations = reservations;
                r.token = token;
                r.lease_until = lease_until;
                r.finished_at = finished_at;
                r.error = error;
                r.dispatch = dispatch;
                r.msg_seq = msg_seq;
                r.trace = trace;
                r.worker = worker;
                r.started_at = started_at;
                r.history = history;
                r.follow_ups = follow_ups
                    .into_iter()
                    .map(|(id, spec)| FollowUp { id, spec })
                    .collect();
                r.set_result(result);
                r
            },
        )
}

/// What a reader does with a record it decoded.
fn use_rec(r: &Rec, len: usize) -> TestCaseResult {
    prop_assert!(r.payload.len() <= len);
    prop_assert!(r.result.as_ref().map_or(0, Vec::len) <= len);
    let _ = r.to_task();
    let _ = r.to_reserved(Receipt::new(vec![1u8]));
    let _ = r.is_due(Timestamp(0));
    let _ = r.lease_expired(Timestamp(0));
    Ok(())
}

#[test]
fn fuzz_record() {
    fuzz("nats record: round trip", 1_000, rec(), |r| {
        prop_assert_eq!(Rec::decode(&r.encode()).ok(), Some(r.clone()));
        prop_assert_eq!(Rec::decode(&r.encode_json()).ok(), Some(r));
        Ok(())
    });
    let input = prop_oneof![
        raw_bytes(512),
        // The binary encoding, or the JSON one, corrupted.
        (rec(), edits()).prop_map(|(r, e)| mutate(r.encode().to_vec(), &e)),
        (rec(), edits()).prop_map(|(r, e)| mutate(r.encode_json(), &e)),
        // Valid bytes after a version byte: short varints, huge lengths.
        (prop::sample::select(vec![1u8, 2, 3]), raw_bytes(256)).prop_map(|(v, mut b)| {
            b.insert(0, v);
            b
        }),
    ];
    fuzz("nats record: decode", 3_000, input, |b| {
        if let Ok(r) = Rec::decode(&b) {
            use_rec(&r, b.len())?;
        }
        Ok(())
    });
}

#[test]
fn fuzz_body() {
    let valid = (
        any::<u64>(),
        any::<u64>(),
        prop::option::of((any::<u64>(), rec())),
    )
        .prop_map(|(id, dispatch, copy)| {
            let copy = copy.map(|(rev, r)| (rev, r.encode()));
            (
                id,
                dispatch,
                copy.clone(),
                body(id, dispatch, copy.as_ref()).to_vec(),
            )
        });
    fuzz(
        "nats message body: round trip",
        1_000,
        valid,
        |(id, dispatch, copy, b)| {
            prop_assert_eq!(parse_body(&b), Some((id, dispatch)));
            let back = parse_copy(&b).map(|(r, rev)| (rev, r.encode()));
            prop_assert_eq!(back, copy.map(|(rev, r): (u64, Bytes)| (rev, r)));
            Ok(())
        },
    );
    let input = prop_oneof![
        raw_bytes(512),
        (any::<u64>(), any::<u64>(), any::<u64>(), rec(), edits()).prop_map(
            |(id, d, rev, r, e)| mutate(body(id, d, Some(&(rev, r.encode()))).to_vec(), &e)
        ),
    ];
    fuzz("nats message body: decode", 2_000, input, |b| {
        let _ = parse_body(&b);
        if let Some((r, _)) = parse_copy(&b) {
            use_rec(&r, b.len())?;
        }
        Ok(())
    });
}

/// Found while writing `fuzz_record` (reading the JSON path): a header whose
/// payload and result lengths add past `usize::MAX` overflowed (a panic in
/// a debug build; in a release build the sum wrapped and the slice that
/// followed panicked). It is a record that does not decode.
#[test]
fn regression_json_lengths_that_overflow_are_an_error() {
    let r = Rec::new(
        1,
        &Spec::of(&NewTask::new("h", vec![]), Timestamp(0)),
        Timestamp(0),
    );
    let json = r.encode_json();
    let at = json.iter().position(|b| *b == b'\n').unwrap();
    let mut head: serde_json::Value = serde_json::from_slice(&json[..at]).unwrap();
    head["payload_len"] = serde_json::json!(usize::MAX);
    head["result_len"] = serde_json::json!(1);
    let mut bytes = serde_json::to_vec(&head).unwrap();
    bytes.push(b'\n');
    assert!(Rec::decode(&bytes).is_err());
}

#[test]
fn fuzz_url() {
    fuzz(
        "nats url: target",
        2_000,
        url_input_for(&["nats", "tls", "NATS", "redis"]),
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
