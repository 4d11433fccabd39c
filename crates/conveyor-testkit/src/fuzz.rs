//! The fuzz harness every crate's fuzz tests use (docs/fuzzing.md): the
//! runner ([`fuzz`]), which runs a property a fixed number of cases in a
//! plain test run or, with `CONVEYOR_FUZZ_SECS=N` set, for N seconds; the
//! byte mutator ([`edits`], [`mutate`], [`raw_bytes`]), which corrupts a
//! valid encoding the way a corrupt store, a buggy peer or an attacker
//! would; and the URL-shaped inputs a backend's URL parser is fuzzed with
//! ([`url_input_for`], [`shaped_url`], [`url_of`], [`url_input_from`]).
//!
//! What each crate fuzzes (its targets, and the strategies for its own
//! codecs) stays in that crate's fuzz tests.
//!
//! ```ignore
//! use conveyor_testkit::fuzz::{fuzz, url_input_for};
//!
//! #[test]
//! fn fuzz_url() {
//!     fuzz("redis url: target", 2_000, url_input_for(&["redis", "rediss"]), |url| {
//!         let _ = crate::scheme::target(&url);
//!         Ok(())
//!     });
//! }
//! ```

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

/// Runs `test` over `strategy`: `cases` cases (the CI run), or, with
/// `CONVEYOR_FUZZ_SECS=N` set, rounds of `cases` fresh random cases until N
/// seconds have passed (the long run). A failure panics with the case,
/// shrunk, and the number of cases that passed before it.
pub fn fuzz<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
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
pub enum Edit {
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
pub fn nasty_chunk() -> impl Strategy<Value = Vec<u8>> {
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

/// One to five [`Edit`]s, for [`mutate`] to apply to a valid input.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
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
pub fn mutate(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
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
pub fn raw_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// A URL-ish text with one of `schemes`: user info, host, path, query and
/// fragment, each maybe odd.
pub fn shaped_url(schemes: &'static [&'static str]) -> impl Strategy<Value = String> {
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
        .prop_map(url_of)
}

/// The parts of a URL-ish text, as [`url_of`] joins them: scheme,
/// separator (`://` or an odd one), user info (name, maybe a password),
/// host and path, query parameters (name, maybe a value) and fragment.
pub type UrlParts = (
    &'static str,
    &'static str,
    Option<(String, Option<String>)>,
    String,
    Vec<(String, Option<String>)>,
    Option<String>,
);

/// The URL-ish text `parts` make: `scheme sep [user[:password]@] host
/// [?k[=v]&…] [#fragment]`, each part as it is, however odd.
pub fn url_of((scheme, sep, user, host, params, fragment): UrlParts) -> String {
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
}

/// URL inputs for a backend whose URLs have one of `schemes`: anything at
/// all, URL-shaped text ([`shaped_url`]), and URL-shaped text mutated.
pub fn url_input_for(schemes: &'static [&'static str]) -> impl Strategy<Value = String> {
    url_input_from(move || shaped_url(schemes))
}

/// URL inputs around `shaped`, a strategy for URL-shaped text (made anew
/// for each use): anything at all, `shaped`'s text, and `shaped`'s text
/// mutated ([`edits`]).
pub fn url_input_from<S>(shaped: impl Fn() -> S) -> impl Strategy<Value = String>
where
    S: Strategy<Value = String>,
{
    prop_oneof![
        raw_bytes(300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        shaped(),
        (shaped(), edits())
            .prop_map(|(u, e)| String::from_utf8_lossy(&mutate(u.into_bytes(), &e)).into_owned()),
    ]
}
