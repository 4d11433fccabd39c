//! Fuzz tests (proptest, stable Rust) of everything this crate decodes from
//! what it reads out of Redis, which any process (or a person with
//! `redis-cli`) may have written: the packed `d` field, the state and data
//! records `reserve` answers with, a task hash, and the backend URL. The
//! properties: no panic, no allocation beyond what the input holds (every
//! length read is checked against the bytes left before it is used), and
//! a round trip where this crate has the encoder.
//!
//! A CI run is a few hundred cases per target; `CONVEYOR_FUZZ_SECS=N` runs
//! each target for N seconds instead (docs/fuzzing.md).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use conveyor_core::{NewTask, Timestamp, TraceContext};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};
use redis::Value;

use crate::packed::{pack, unpack};
use crate::records::{data, state};
use crate::reply::{record, record_from_flat, reserved};

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

/// A task as a client enqueues it, with every field this crate packs.
fn task() -> impl Strategy<Value = (NewTask, i64)> {
    (
        "\\PC{0,12}",
        raw_bytes(64),
        any::<u32>(),
        prop::option::of(any::<u64>()),
        trace(),
        any::<i64>(),
    )
        .prop_map(|(h, payload, ma, timeout, trace, now)| {
            let mut t = NewTask::new(h, payload).max_attempts(ma);
            t.max_attempts = ma;
            t.timeout = timeout.map(Duration::from_millis);
            t.trace = trace;
            (t, now)
        })
}

#[test]
fn fuzz_packed() {
    fuzz("redis packed d: round trip", 1_000, task(), |(t, now)| {
        let p =
            unpack(1, pack(&t, Timestamp(now))).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.max_attempts, t.max_attempts);
        prop_assert_eq!(p.created_at, Timestamp(now));
        prop_assert_eq!(p.timeout, t.timeout);
        prop_assert_eq!(p.trace, t.trace);
        prop_assert_eq!(p.payload, t.payload);
        Ok(())
    });
    let input = prop_oneof![
        raw_bytes(512),
        (task(), edits()).prop_map(|((t, now), e)| mutate(pack(&t, Timestamp(now)), &e)),
    ];
    fuzz("redis packed d: decode", 2_000, input, |d| {
        let len = d.len();
        if let Ok(p) = unpack(1, d) {
            prop_assert!(p.payload.len() <= len);
        }
        Ok(())
    });
}

/// A data record as the scripts write it: the short form when every length
/// fits a byte (and `long` is false), else the long one.
fn data_record(
    (q, h): (&str, &str),
    (uk, ok): (Option<&str>, Option<&str>),
    (pr, ra): (i64, i64),
    d: &[u8],
    long: bool,
) -> Vec<u8> {
    let plus_one = |k: Option<&str>| k.map_or(0, |k| k.len() + 1);
    let lens = [q.len(), h.len(), plus_one(uk), plus_one(ok)];
    let mut r = Vec::new();
    if long || lens.iter().any(|l| *l > 254) {
        r.push(255);
        let key = |k: Option<&str>| k.map_or(-1, |k| k.len() as i64);
        for l in [q.len() as i64, h.len() as i64, key(uk), key(ok)] {
            r.extend_from_slice(format!("{l} ").as_bytes());
        }
    } else {
        r.extend(lens.iter().map(|l| *l as u8));
    }
    for s in [q, h, uk.unwrap_or(""), ok.unwrap_or("")] {
        r.extend_from_slice(s.as_bytes());
    }
    r.extend_from_slice(format!("{pr} {ra} ").as_bytes());
    r.extend_from_slice(d);
    r
}

fn valid_data_record() -> impl Strategy<Value = (Vec<u8>, String, String, Option<String>)> {
    (
        "\\PC{0,10}",
        "\\PC{0,10}",
        prop::option::of("\\PC{0,8}"),
        prop::option::of("[ a-z]{0,300}"),
        any::<i64>(),
        any::<i64>(),
        task(),
        any::<bool>(),
    )
        .prop_map(|(q, h, uk, ok, pr, ra, (t, now), long)| {
            let d = pack(&t, Timestamp(now));
            let r = data_record((&q, &h), (uk.as_deref(), ok.as_deref()), (pr, ra), &d, long);
            (r, q, h, ok)
        })
}

#[test]
fn fuzz_records() {
    fuzz(
        "redis data record: round trip",
        1_000,
        valid_data_record(),
        |(r, q, h, ok)| {
            let d = data(1, r).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(d.queue, q);
            prop_assert_eq!(d.handler, h);
            prop_assert_eq!(d.ordering_key, ok);
            Ok(())
        },
    );
    let input = prop_oneof![
        raw_bytes(512),
        (valid_data_record(), edits()).prop_map(|((r, ..), e)| mutate(r, &e)),
    ];
    fuzz("redis data record: decode", 2_000, input, |r| {
        let len = r.len();
        if let Ok(d) = data(1, r) {
            prop_assert!(d.queue.len() + d.handler.len() + d.packed.payload.len() <= len);
        }
        Ok(())
    });
    let state_record = (
        0..10i64,
        any::<u64>(),
        prop::option::of(any::<i64>()),
        any::<u32>(),
        any::<i64>(),
        "[ a-z0-9:]{0,20}",
    )
        .prop_map(|(s, tk, fa, a, ra, at)| {
            let fa = fa.map(|f| f.to_string()).unwrap_or_default();
            format!("{s} {tk} {fa} {a} {ra} {at}").into_bytes()
        });
    let input = prop_oneof![
        raw_bytes(128),
        (state_record, edits()).prop_map(|(r, e)| mutate(r, &e))
    ];
    fuzz("redis state record: decode", 2_000, input, |r| {
        let _ = state(1, &r);
        Ok(())
    });
}

/// A task hash (`HGETALL`) as the scripts write it, some fields changed.
fn task_hash() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let field = prop_oneof![
        Just("q"),
        Just("h"),
        Just("p"),
        Just("pr"),
        Just("s"),
        Just("a"),
        Just("ma"),
        Just("ra"),
        Just("ca"),
        Just("fa"),
        Just("at"),
        Just("hi"),
        Just("d"),
        Just("tc"),
        Just("uk"),
        Just("ok"),
        Just("r"),
        Just("e"),
        Just("to"),
        Just("zz"),
    ];
    (
        task(),
        prop::collection::vec((field, raw_bytes(40), edits()), 0..6),
        any::<bool>(),
    )
        .prop_map(|((t, now), changes, packed)| {
            let n = |v: i64| v.to_string().into_bytes();
            let mut f: Vec<(String, Vec<u8>)> = vec![
                ("q".into(), b"default".to_vec()),
                ("h".into(), t.handler.clone().into_bytes()),
                ("pr".into(), n(3)),
                ("s".into(), n(4)),
                ("a".into(), n(2)),
                ("ra".into(), n(now)),
                ("fa".into(), n(now)),
                ("at".into(), format!("{now} host:1").into_bytes()),
                (
                    "hi".into(),
                    br#"[{"n":1,"w":"h:1","s":5,"e":6,"o":"failed","x":"no"}]"#.to_vec(),
                ),
            ];
            if packed {
                f.push(("d".into(), pack(&t, Timestamp(now))));
            } else {
                f.push(("p".into(), t.payload.clone()));
                f.push(("ma".into(), n(t.max_attempts.into())));
                f.push(("ca".into(), n(now)));
            }
            for (name, value, edits) in changes {
                match f.iter_mut().find(|(k, _)| k == name) {
                    Some((_, v)) => *v = mutate(std::mem::take(v), &edits),
                    None => f.push((name.to_string(), value)),
                }
            }
            f
        })
}

#[test]
fn fuzz_task_hash() {
    fuzz("redis task hash: decode", 2_000, task_hash(), |pairs| {
        let flat: Vec<Value> = pairs
            .iter()
            .flat_map(|(k, v)| {
                [
                    Value::BulkString(k.clone().into_bytes()),
                    Value::BulkString(v.clone()),
                ]
            })
            .collect();
        let _ = record(1, pairs);
        let _ = record_from_flat(1, Value::Array(flat));
        Ok(())
    });
    // A reserve reply: id, state record, data record, any number of times.
    let item = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        raw_bytes(40).prop_map(Value::BulkString),
        valid_data_record().prop_map(|(r, ..)| Value::BulkString(r)),
        Just(Value::BulkString(b"2 2  1 11 99 worker".to_vec())),
        Just(Value::Nil),
        Just(Value::Array(vec![Value::Nil])),
    ];
    fuzz(
        "redis reserve reply: decode",
        1_000,
        prop::collection::vec(item, 0..10),
        |items| {
            let _ = reserved(items, Timestamp(0));
            Ok(())
        },
    );
}

/// Found by `fuzz_packed`: a timeout past `i64::MAX` ms (`Duration::MAX`)
/// was packed but did not decode, so the task could never be read again.
#[test]
fn regression_a_huge_timeout_reads_back() {
    let t = NewTask::new("h", b"x".to_vec()).timeout(Duration::MAX);
    let p = unpack(1, pack(&t, Timestamp(5))).expect("decodes");
    assert_eq!(p.timeout, Some(Duration::from_millis(u64::MAX)));
    assert!(unpack(1, b"1 3 4 18446744073709551616 0 ".to_vec()).is_err());
}

/// A long-form data record whose key length is `i64::MAX` overflowed the
/// "plus one" (a panic in a debug build): it is an error naming the field.
#[test]
fn regression_a_key_length_of_i64_max_is_an_error() {
    for at in [2, 3] {
        let mut lens = ["0"; 4];
        lens[at] = "9223372036854775807";
        let mut r = vec![255];
        r.extend_from_slice(format!("{} 0 0 1 3 4  0 ", lens.join(" ")).as_bytes());
        let err = data(1, r).expect_err("does not decode");
        assert!(err.to_string().contains("length"), "{err}");
    }
}

#[test]
fn fuzz_url() {
    fuzz("redis url: target", 2_000, url_input(), |url| {
        let _ = crate::scheme::target(&url);
        Ok(())
    });
}

fn url_input() -> impl Strategy<Value = String> {
    url_input_for(&["redis", "rediss", "REDIS", "redis+unix", "postgres"])
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
