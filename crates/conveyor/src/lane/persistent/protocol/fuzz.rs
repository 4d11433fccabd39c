//! Fuzz tests (proptest, stable Rust) of the persistent-handler protocol:
//! the reply lines a child writes are read by [`parse`] whatever they hold
//! (any bytes, JSON of any shape, valid replies corrupted), never a panic,
//! and a reply written in each documented form reads back as its outcome;
//! a request line is one line that reads back as the request. (A line is
//! read from the pipe with a cap, [`MAX_REPLY`], before it gets here.)
//!
//! A CI run is a few hundred cases; `CONVEYOR_FUZZ_SECS=N` runs each
//! target for N seconds instead (docs/fuzzing.md).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use conveyor_core::ErrorKind;
use conveyor_testkit::fuzz::{edits, fuzz, mutate, raw_bytes};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use serde_json::{json, Value};

use super::{parse, Line, Request};

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    json_of(any::<f64>().boxed())
}

/// A JSON value whose numbers read back exactly: serde_json (as the
/// workspace builds it, without `float_roundtrip`) may read a float
/// written with 17 significant digits one unit in the last place off, so
/// the round trips use floats that print in fewer.
fn exact_json_value() -> impl Strategy<Value = Value> {
    json_of(any::<i32>().prop_map(|n| f64::from(n) / 4.0).boxed())
}

fn json_of(float: BoxedStrategy<f64>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        float.prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A reply object as a child may write one: the documented keys with
/// values of any type, the id right or wrong, and extra keys.
fn reply_object() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        Just(json!(7)),
        Just(json!("7")),
        Just(json!(7.0)),
        Just(json!(-7)),
        Just(json!(" 7")),
        json_value(),
    ];
    let key = prop::sample::select(vec![
        "result",
        "error",
        "retry_after",
        "permanent",
        "discard",
        "extra",
    ]);
    let retry = prop_oneof![
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        Just(json!(18446744073709551615u64)),
        json_value(),
    ];
    (
        prop::option::of(id),
        prop::collection::vec((key, json_value()), 0..5),
        prop::option::of(retry),
    )
        .prop_map(|(id, fields, retry)| {
            let mut m = serde_json::Map::new();
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            for (k, v) in fields {
                m.insert(k.into(), v);
            }
            if let Some(r) = retry {
                m.insert("retry_after".into(), r);
            }
            Value::Object(m)
        })
}

/// What reading a line must give, whatever the line.
fn check_line(line: &[u8]) -> TestCaseResult {
    match parse(line, 7) {
        Line::Other => {}
        Line::Reply(Ok(_)) => {}
        Line::Reply(Err(e)) => {
            prop_assert!(!e.message().is_empty());
            if let ErrorKind::RetryAfter(d) = e.kind() {
                prop_assert!(d <= Duration::MAX);
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_persistent_protocol() {
    let line = prop_oneof![
        raw_bytes(512),
        reply_object().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (reply_object(), edits()).prop_map(|(v, e)| mutate(serde_json::to_vec(&v).unwrap(), &e)),
    ];
    fuzz("persistent protocol: reply lines", 2_000, line, |line| {
        check_line(&line)
    });

    // Each documented form reads back as its outcome.
    let secs = (0..4_000_000u32).prop_map(|q| f64::from(q) / 4.0);
    let form = (0..5u8, exact_json_value(), "\\PC{1,30}", secs);
    fuzz(
        "persistent protocol: reply forms",
        1_000,
        form,
        |(which, value, text, secs)| {
            let (line, want) = match which {
                0 => (json!({"id": 7, "result": value}), None),
                1 => (
                    json!({"id": "7", "error": text}),
                    Some(ErrorKind::Retryable),
                ),
                2 => (
                    json!({"id": 7, "error": text, "retry_after": secs}),
                    Some(ErrorKind::RetryAfter(Duration::from_secs_f64(secs))),
                ),
                3 => (
                    json!({"id": 7, "error": text, "permanent": true}),
                    Some(ErrorKind::Permanent),
                ),
                _ => (json!({"id": 7, "discard": text}), Some(ErrorKind::Discard)),
            };
            let Line::Reply(r) = parse(&serde_json::to_vec(&line).unwrap(), 7) else {
                return Err(TestCaseError::fail(format!("not a reply: {line}")));
            };
            match (r, want) {
                (Ok(v), None) => prop_assert_eq!(v, value),
                (Err(e), Some(kind)) => {
                    prop_assert_eq!(e.kind(), kind);
                    prop_assert_eq!(e.message(), text.as_str());
                }
                (r, want) => return Err(TestCaseError::fail(format!("{r:?}, wanted {want:?}"))),
            }
            // Another task's reply is never taken for this one's.
            prop_assert!(matches!(
                parse(&serde_json::to_vec(&line).unwrap(), 8),
                Line::Other
            ));
            Ok(())
        },
    );

    // A request is exactly one line, and reads back as sent.
    let request = (
        any::<u64>(),
        "\\PC{0,20}",
        any::<u32>(),
        prop::option::of(any::<u64>()),
        exact_json_value(),
    );
    fuzz(
        "persistent protocol: request lines",
        1_000,
        request,
        |(id, handler, attempt, deadline_ms, params)| {
            let req = Request {
                id,
                handler: &handler,
                attempt,
                deadline_ms,
                params: &params,
            };
            let line = req.line().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            prop_assert_eq!(line.last(), Some(&b'\n'));
            let back: Value = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(&back["id"], &json!(id));
            prop_assert_eq!(&back["handler"], &json!(handler));
            prop_assert_eq!(&back["attempt"], &json!(attempt));
            prop_assert_eq!(&back["deadline_ms"], &json!(deadline_ms));
            prop_assert_eq!(&back["params"], &params);
            Ok(())
        },
    );
}
