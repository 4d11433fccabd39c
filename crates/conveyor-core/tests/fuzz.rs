//! Fuzz tests (proptest, stable Rust) of what conveyor-core decodes from
//! data it did not write itself: a stored attempt history, a stored trace
//! context, backend URLs, and the secret redaction every error and log line
//! goes through. Each property: no panic, output bounded by the input, and
//! a round trip where an encoder exists.
//!
//! A CI run is a few hundred cases per target; `CONVEYOR_FUZZ_SECS=N` runs
//! each target for N seconds instead (docs/fuzzing.md).

#![allow(missing_docs, clippy::unwrap_used)]

use conveyor_core::attempt::{decode_history, encode_history, ERROR_CHARS, HISTORY_LIMIT};
use conveyor_core::{
    redact_secrets, AttemptOutcome, AttemptRecord, BackendUrl, Timestamp, TraceContext, HIDDEN,
};
use conveyor_testkit::fuzz::{edits, fuzz, mutate, raw_bytes, url_input_from, url_of};
use proptest::prelude::*;

fn outcome() -> impl Strategy<Value = AttemptOutcome> {
    let text = "\\PC{0,40}";
    prop_oneof![
        Just(AttemptOutcome::Succeeded),
        text.prop_map(|error| AttemptOutcome::Failed { error }),
        text.prop_map(|error| AttemptOutcome::DeadLettered { error }),
        text.prop_map(|reason| AttemptOutcome::Discarded { reason }),
        Just(AttemptOutcome::Released),
        Just(AttemptOutcome::LeaseExpired),
    ]
}

fn attempt() -> impl Strategy<Value = AttemptRecord> {
    (
        any::<u32>(),
        prop::option::of("[a-z0-9:]{1,12}"),
        any::<i64>(),
        prop::option::of(any::<i64>()),
        outcome(),
    )
        .prop_map(|(attempt, worker, s, e, outcome)| AttemptRecord {
            attempt,
            worker,
            started_at: Timestamp(s),
            ended_at: e.map(Timestamp),
            outcome,
        })
}

fn history() -> impl Strategy<Value = Vec<AttemptRecord>> {
    prop::collection::vec(attempt(), 0..(HISTORY_LIMIT + 3))
}

#[test]
fn fuzz_attempt_history() {
    let input = prop_oneof![
        // Anything at all.
        raw_bytes(2048).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        // A valid history, corrupted.
        (history(), edits()).prop_map(|(h, e)| {
            String::from_utf8_lossy(&mutate(encode_history(&h).into_bytes(), &e)).into_owned()
        }),
    ];
    fuzz("attempt history: decode", 1_000, input, |text| {
        let decoded = decode_history(Some(&text));
        // An entry is at least `{"n":0,"s":0,"o":"released"}` long.
        prop_assert!(decoded.len() <= text.len() / 20 + 1);
        for a in &decoded {
            prop_assert!(a.outcome.code().is_some());
        }
        Ok(())
    });
    fuzz("attempt history: round trip", 500, history(), |h| {
        let back = decode_history(Some(&encode_history(&h)));
        let kept = &h[h.len().saturating_sub(HISTORY_LIMIT)..];
        prop_assert_eq!(back.len(), kept.len());
        for (a, b) in kept.iter().zip(&back) {
            prop_assert_eq!(a.attempt, b.attempt);
            prop_assert_eq!(&a.worker, &b.worker);
            prop_assert_eq!(a.started_at, b.started_at);
            prop_assert_eq!(a.ended_at, b.ended_at);
            prop_assert_eq!(a.outcome.code(), b.outcome.code());
            let clipped: String = a
                .outcome
                .error()
                .unwrap_or("")
                .chars()
                .take(ERROR_CHARS)
                .collect();
            prop_assert_eq!(clipped.as_str(), b.outcome.error().unwrap_or(""));
        }
        Ok(())
    });
}

fn trace_context() -> impl Strategy<Value = TraceContext> {
    (
        "[0-9a-f]{31}[1-9a-f]",
        "[1-9a-f][0-9a-f]{15}",
        "[0-9a-f]{2}",
        prop::option::of("[ -~]{1,80}"),
    )
        .prop_map(|(t, s, f, state)| TraceContext::new(format!("00-{t}-{s}-{f}"), state).unwrap())
}

#[test]
fn fuzz_trace_context() {
    let input = prop_oneof![
        raw_bytes(700).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        (trace_context(), edits()).prop_map(|(t, e)| {
            String::from_utf8_lossy(&mutate(t.encode().into_bytes(), &e)).into_owned()
        }),
    ];
    fuzz("trace context: from_stored", 2_000, input, |text| {
        if let Some(t) = TraceContext::from_stored(Some(&text)) {
            // What parsed is valid: its parts read without panicking and
            // it stores back to what was read.
            prop_assert_eq!(t.trace_id().len(), 32);
            prop_assert_eq!(t.span_id().len(), 16);
            let _ = t.flags();
            prop_assert!(t.tracestate().is_none_or(|s| s.len() <= 512));
            prop_assert_eq!(TraceContext::decode(&t.encode()), Ok(t));
        }
        Ok(())
    });
    fuzz("trace context: round trip", 500, trace_context(), |t| {
        prop_assert_eq!(TraceContext::from_stored(Some(&t.encode())), Some(t));
        Ok(())
    });
}

/// A URL-ish text: a scheme, user info, host, path, query and fragment,
/// each maybe odd.
fn url_like() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("redis"),
            Just("rediss"),
            Just("redis+unix"),
            Just("postgres"),
            Just("postgresql"),
            Just("amqp"),
            Just("amqps"),
            Just("nats"),
            Just("embedded"),
            Just("sqlite"),
            Just("memory"),
            Just("x"),
            Just("1x"),
            Just(""),
        ],
        prop_oneof![Just("://"), Just(":"), Just(":///"), Just("//")],
        prop::option::of((
            "[a-z:%@]{0,8}",
            prop::option::of("[A-Za-z0-9:@%/?#=&]{0,12}"),
        )),
        "[a-z0-9.:\\[\\]/@-]{0,20}",
        prop::collection::vec(
            (
                "[a-z_?=#&]{0,10}",
                prop::option::of("[a-z0-9:/@=?#&%-]{0,16}"),
            ),
            0..5,
        ),
        prop::option::of("[a-z#?&=]{0,6}"),
    )
        .prop_map(url_of)
}

/// URL inputs: arbitrary text, URL-shaped text, and URL-shaped text mutated.
fn url_input() -> impl Strategy<Value = String> {
    url_input_from(url_like)
}

#[test]
fn fuzz_backend_url() {
    fuzz("backend url: parse", 2_000, url_input(), |text| {
        let Ok(mut url) = BackendUrl::parse(&text) else {
            return Ok(());
        };
        prop_assert!(conveyor_core::scheme_of(&text).is_some());
        prop_assert!(url.body().len() <= text.len());
        // What is written back parses to the same parts.
        let again = url.to_url();
        let back = BackendUrl::parse(&again).unwrap();
        prop_assert_eq!(back.scheme(), url.scheme());
        prop_assert_eq!(back.body(), url.body());
        // (A bare `=` is a parameter with no name and no value: written
        // back as nothing, which is the same to every reader.)
        let params: Vec<(String, String)> = url
            .params()
            .iter()
            .filter(|(k, v)| !(k.is_empty() && v.is_empty()))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let back_params: Vec<(String, String)> = back
            .params()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        prop_assert_eq!(back_params, params);
        // Taking every parameter out leaves none, whatever the names.
        let names: Vec<String> = url.params().iter().map(|(k, _)| k.to_string()).collect();
        for name in &names {
            let _ = url.take(name);
        }
        let _ = url.allow_only(&[]);
        let _ = BackendUrl::parse_as(&text, &["redis", "postgres"]);
        Ok(())
    });
}

#[test]
fn fuzz_redact_secrets() {
    fuzz("redact secrets: any text", 2_000, url_input(), |text| {
        let out = redact_secrets(&text);
        // Hiding never grows a secret: at most one HIDDEN per input byte.
        prop_assert!(out.len() <= text.len() * (HIDDEN.len() + 1) + HIDDEN.len());
        Ok(())
    });
    // A password in a URL's user info, anywhere in a line of text, is
    // never shown.
    let line = (
        "[a-z ]{0,10}",
        prop_oneof![
            Just("redis"),
            Just("postgres"),
            Just("amqp"),
            Just("nats"),
            Just("rediss")
        ],
        "[a-z]{0,6}",
        "[A-Z0-9]{4,12}",
        "[a-z0-9.]{1,12}",
        "[a-z ]{0,10}",
    );
    fuzz(
        "redact secrets: passwords hidden",
        1_000,
        line,
        |(pre, scheme, user, pw, host, post)| {
            let secret = format!("Zq{pw}");
            let text =
                format!("{pre}{scheme}://{user}:{secret}@{host}/0?password={secret}&x=1 {post}");
            let out = redact_secrets(&text);
            prop_assert!(!out.contains(&secret), "{} shows {}", out, secret);
            Ok(())
        },
    );
}
