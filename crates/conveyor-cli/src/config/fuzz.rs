//! Fuzz test (proptest, stable Rust) of `conveyor.toml` parsing: any text,
//! config-shaped text with odd values (durations, rates, sizes and
//! argument templates at and past their limits) and valid configs
//! corrupted are refused with an error or read, never a panic; what is
//! read has what a worker then asks of it (its sizes and templates read
//! too).
//!
//! A CI run is a few hundred cases; `CONVEYOR_FUZZ_SECS=N` runs it for N
//! seconds instead (docs/fuzzing.md).

#![allow(clippy::unwrap_used)]

use conveyor_testkit::fuzz::{edits, fuzz, mutate, raw_bytes};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use crate::template;

/// A value for `key`, often odd.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        // Durations.
        prop::sample::select(vec![
            "\"10s\"",
            "\"0s\"",
            "\"500ms\"",
            "\"1m\"",
            "\"-1s\"",
            "\"18446744073709551615s\"",
            "\"99999999999999999999y\"",
            "\"1ns\"",
            "\"s\"",
            "\"\"",
        ])
        .prop_map(String::from),
        // Rates.
        prop::sample::select(vec![
            "\"5/s\"",
            "\"0/s\"",
            "\"1/0s\"",
            "\"99999999999999999999/s\"",
            "\"1e400/s\"",
            "\"NaN/s\"",
            "\"-1/s\"",
            "\"1/18446744073709551615s\"",
            "\"/\"",
            "\"5/ms\"",
        ])
        .prop_map(String::from),
        // Sizes.
        prop::sample::select(vec![
            "\"300 MiB\"",
            "\"0\"",
            "\"99999999999999999 EiB\"",
            "\"1e30 B\"",
            "\"-5 KiB\"",
            "\"inf GB\"",
            "\"NaN B\"",
            "\"lots\"",
        ])
        .prop_map(String::from),
        // Argument lists with templates.
        prop::collection::vec(
            prop::sample::select(vec![
                "{msg}", "{", "}", "{{", "}}", "{a.b}", "{0}", "{}", "{{x}}", "x{y}z", "{ a }",
                "{\u{0}}", "plain",
            ]),
            0..4,
        )
        .prop_map(|args| {
            let quoted: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
            format!("[{}]", quoted.join(", "))
        }),
        // Numbers, booleans, strings, tables.
        any::<i64>().prop_map(|n| n.to_string()),
        Just("18446744073709551615".to_string()),
        Just("0".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
        Just("{ a = 1 }".to_string()),
        Just("[[1], [\"a\"]]".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("inf".to_string()),
        Just("nan".to_string()),
    ]
}

const KEYS: &[&str] = &[
    "program",
    "args",
    "lane",
    "concurrency",
    "rate",
    "burst",
    "retries",
    "backoff",
    "timeout",
    "env",
    "cwd",
    "stdin_params",
    "persistent",
    "processes",
    "max_tasks_per_child",
    "max_memory",
    "keep_completed",
    "keep_dead",
    "queues",
    "slots",
    "lease",
    "grace",
    "poll",
    "unknown",
];

/// A config-shaped text: sections and keys, each with a value of any kind.
fn config_text() -> impl Strategy<Value = String> {
    let section = (
        prop_oneof![
            Just("[worker]".to_string()),
            "[a-z\"\\. ]{0,8}".prop_map(|n| format!("[handlers.{n}]")),
            Just("[handlers]".to_string()),
            Just("[[handlers.x]]".to_string()),
            Just("[handlers.x.env]".to_string()),
        ],
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..8),
    );
    prop::collection::vec(section, 0..4).prop_map(|sections| {
        let mut text = String::new();
        for (head, keys) in sections {
            text.push_str(&head);
            text.push('\n');
            for (k, v) in keys {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text
    })
}

const VALID: &str = r#"
[worker]
queues = ["default", "mail"]
slots = 4
lease = "10s"
grace = "5s"
poll = "200ms"

[handlers.echo]
program = "echo"
args = ["{msg}", "--n={n}"]
rate = "5/s"
burst = 2
retries = 2
backoff = "1s"
timeout = "1m"
concurrency = 3
env = { A = "1" }
cwd = "/tmp"

[handlers.py]
program = "python3"
args = ["handler.py"]
persistent = true
processes = 2
max_tasks_per_child = 100
max_memory = "300 MiB"
"#;

/// What a worker asks of a config it read.
fn use_config(text: &str) -> TestCaseResult {
    let Ok(cfg) = super::Config::parse(text) else {
        return Ok(());
    };
    prop_assert!(!cfg.handlers.is_empty());
    for h in cfg.handlers.values() {
        prop_assert!(!h.program.trim().is_empty());
        let _ = h.max_memory_bytes();
        for a in &h.args {
            prop_assert!(template::tokens(a).is_ok());
        }
    }
    Ok(())
}

#[test]
fn fuzz_config() {
    prop_assert_valid();
    let input = prop_oneof![
        raw_bytes(1024).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        config_text(),
        (config_text(), edits()).prop_map(|(t, e)| String::from_utf8_lossy(&mutate(
            t.into_bytes(),
            &e
        ))
        .into_owned()),
        edits().prop_map(|e| {
            String::from_utf8_lossy(&mutate(VALID.as_bytes().to_vec(), &e)).into_owned()
        }),
    ];
    fuzz("conveyor.toml", 1_000, input, |text| use_config(&text));
}

/// The seed the mutations start from is itself valid.
fn prop_assert_valid() {
    let cfg = super::Config::parse(VALID).expect("the seed config is valid");
    assert_eq!(cfg.handlers.len(), 2);
}
