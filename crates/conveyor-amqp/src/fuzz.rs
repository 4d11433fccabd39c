//! Fuzz tests (proptest, stable Rust) of what this crate decodes from data
//! it did not write itself: a delivered message's properties and headers
//! (anyone with access to the queue may publish one, `message.rs`) and the
//! backend URL (`scheme.rs`). The properties: no panic, and decode(encode(x))
//! == x for a message. (Task records are kept, and decoded, by the record
//! keeper's own backend, which fuzzes its own decoders.)
//!
//! A CI run is a few hundred cases per target; `CONVEYOR_FUZZ_SECS=N` runs
//! each target for N seconds instead (docs/fuzzing.md).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use conveyor_core::workflow::entries::NodeLink;
use conveyor_core::{TaskId, Timestamp, TraceContext};
use conveyor_testkit::fuzz::{fuzz, raw_bytes, url_input_for};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use proptest::prelude::*;

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
        (
            trace(),
            prop::option::of(0..=i64::MAX as u64),
            prop::option::of((any::<u64>(), any::<u32>())),
        ),
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
                (trace, keep, node),
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
                    keep: keep.map(Duration::from_millis),
                    node: node.map(|(flow, node)| NodeLink { flow, node }),
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
