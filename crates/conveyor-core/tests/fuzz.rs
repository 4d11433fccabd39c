//! Fuzz tests (proptest, stable Rust) of what conveyor-core decodes from
//! data it did not write itself: a stored attempt history, a stored trace
//! context, backend URLs, and the secret redaction every error and log line
//! goes through. Each property: no panic, output bounded by the input, and
//! a round trip where an encoder exists.
//!
//! A CI run is a few hundred cases per target; `CONVEYOR_FUZZ_SECS=N` runs
//! each target for N seconds instead (docs/fuzzing.md).

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use conveyor_core::attempt::{decode_history, encode_history, ERROR_CHARS, HISTORY_LIMIT};
use conveyor_core::{
    redact_secrets, AttemptOutcome, AttemptRecord, BackendUrl, Timestamp, TraceContext, HIDDEN,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

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

/// URL inputs: arbitrary text, URL-shaped text, and URL-shaped text mutated.
fn url_input() -> impl Strategy<Value = String> {
    prop_oneof![
        raw_bytes(300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        url_like(),
        (url_like(), edits()).prop_map(|(u, e)| String::from_utf8_lossy(&mutate(
            u.into_bytes(),
            &e
        ))
        .into_owned()),
    ]
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
