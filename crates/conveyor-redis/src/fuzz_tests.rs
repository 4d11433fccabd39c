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

use std::time::Duration;

use conveyor_core::{NewTask, Timestamp, TraceContext};
use conveyor_testkit::fuzz::{edits, fuzz, mutate, raw_bytes, url_input_for};
use proptest::prelude::*;
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
