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

use std::time::Duration;

use bytes::Bytes;
use conveyor_core::{NewTask, Receipt, Timestamp};
use conveyor_testkit::fuzz::{edits, fuzz, mutate, raw_bytes, url_input_for};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

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
