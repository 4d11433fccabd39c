//! Keeping secrets out of what conveyor shows: a backend URL carries its
//! credentials (`redis://:PASSWORD@host`, `postgres://user:PASSWORD@host`,
//! `nats://TOKEN@host`, `?password=…`, and a second URL inside a parameter,
//! as RabbitMQ's `?results=redis://:PASSWORD@…`), and a URL ends up in
//! errors, log lines, metric labels and pages. [`redact_url`] hides them in
//! one URL; [`redact_secrets`] in any text that may hold URLs (an error
//! chain, a log line), so a path that forgot the first is still covered by
//! the second at the edge (the CLI's error report and log writer).
//!
//! What is hidden: the password of a URL's user info (the user name stays:
//! it helps and is not secret), the whole user info of a `nats` URL (a bare
//! token there), and the values of query parameters whose name says secret
//! (`password`, `pass`, `token`, `secret`, and names ending in them, as
//! `sslpassword` or `auth_token`). Each becomes [`HIDDEN`].

use std::borrow::Cow;

/// What a secret is replaced with.
pub const HIDDEN: &str = "***";

/// `url` with its credentials hidden (see the module's header).
///
/// ```
/// use conveyor_core::redact_url;
///
/// assert_eq!(redact_url("redis://:s3cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
/// assert_eq!(
///     redact_url("amqp://guest:guest@127.0.0.1/?results=redis://:pw@127.0.0.1"),
///     "amqp://guest:***@127.0.0.1/?results=redis://:***@127.0.0.1"
/// );
/// assert_eq!(redact_url("./conveyor.db"), "./conveyor.db");
/// ```
pub fn redact_url(url: &str) -> String {
    redact_secrets(url).into_owned()
}

/// `text` with the credentials of every URL in it hidden; borrowed when
/// there were none.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut hide = |start: usize, end: usize, out: &mut Option<String>| {
        let s = out.get_or_insert_with(|| String::with_capacity(text.len()));
        s.push_str(&text[copied..start]);
        s.push_str(HIDDEN);
        copied = end;
    };
    // Every secret's byte range, in order.
    for (start, end) in secret_ranges(text) {
        hide(start, end, &mut out);
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut s) => {
            s.push_str(&text[copied..]);
            Cow::Owned(s)
        }
    }
}

/// The byte ranges of `text` that hold secrets, in order, not overlapping.
fn secret_ranges(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let sep = from + found;
        let authority = sep + 3;
        let end = authority
            + text[authority..]
                .find(|c: char| is_authority_end(c))
                .unwrap_or(text.len() - authority);
        if let Some(at) = text[authority..end].rfind('@') {
            let info = (authority, authority + at);
            let scheme = scheme_before(bytes, sep);
            match text[info.0..info.1].find(':') {
                Some(colon) if info.0 + colon + 1 < info.1 => {
                    ranges.push((info.0 + colon + 1, info.1));
                }
                None if scheme.starts_with("nats") && info.0 < info.1 => ranges.push(info),
                _ => {}
            }
        }
        from = end.max(authority);
    }
    ranges.extend(secret_params(text));
    ranges.extend(secret_debug_fields(text));
    ranges.sort_unstable();
    // Drop a range inside an earlier one (a nested URL's password inside a
    // parameter already hidden whole).
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match kept.last() {
            Some(last) if r.0 < last.1 => {}
            _ => kept.push(r),
        }
    }
    kept
}

/// Where a URL's authority (`user:pass@host:port`) ends.
fn is_authority_end(c: char) -> bool {
    matches!(
        c,
        '/' | '?' | '#' | '&' | '"' | '\'' | '<' | '>' | '`' | ')' | ']' | ','
    ) || c.is_whitespace()
}

/// The scheme that ends at byte `sep` (the `:` of `://`), lowercased.
fn scheme_before(bytes: &[u8], sep: usize) -> String {
    let start = bytes[..sep]
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .map_or(0, |p| p + 1);
    String::from_utf8_lossy(&bytes[start..sep]).to_ascii_lowercase()
}

/// The values of secret query parameters (`NAME=VALUE` after `?` or `&`).
fn secret_params(text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    for (i, c) in text.char_indices() {
        if c != '?' && c != '&' {
            continue;
        }
        let name_start = i + 1;
        let Some(eq) = text[name_start..].find(|c: char| c == '=' || is_param_end(c)) else {
            continue;
        };
        let eq = name_start + eq;
        if !text[eq..].starts_with('=') || !is_secret_name(&text[name_start..eq]) {
            continue;
        }
        let value = eq + 1;
        let end = value
            + text[value..]
                .find(is_param_end)
                .unwrap_or(text.len() - value);
        if end > value {
            ranges.push((value, end));
        }
    }
    ranges
}

/// The values of secret fields in a `Debug` rendering, as a driver's debug
/// log writes its parsed URL (`password: Some("…")`, `token: "…"`, and a
/// NATS URL's `username: "…"`, a bare token there).
fn secret_debug_fields(text: &str) -> Vec<(usize, usize)> {
    let nats = text.contains("scheme: \"nats");
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(": ") {
        let colon = from + found;
        from = colon + 2;
        let name_start = text[..colon]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map_or(0, |(p, c)| p + c.len_utf8());
        let name = &text[name_start..colon];
        let secret = is_secret_name(name) || (nats && name == "username");
        if name.is_empty() || !secret {
            continue;
        }
        let rest = &text[from..];
        let open = if rest.starts_with("Some(\"") {
            from + 6
        } else if rest.starts_with('"') {
            from + 1
        } else {
            continue;
        };
        // The string's end: the next quote not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in text[open..].char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(open + i);
                    break;
                }
                _ => escaped = false,
            }
        }
        if let Some(end) = end {
            if end > open {
                ranges.push((open, end));
            }
            from = end;
        }
    }
    ranges
}

/// Where a query parameter's value ends.
fn is_param_end(c: char) -> bool {
    matches!(c, '&' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
}

/// A parameter name that says its value is secret.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "pass"
        || ["password", "passwd", "token", "secret"]
            .iter()
            .any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_tokens_and_secret_parameters() {
        let cases = [
            (
                "redis://:pw@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "rediss://user:pw@h/0?prefix=a:",
                "rediss://user:***@h/0?prefix=a:",
            ),
            (
                "postgres://app:p%40ss@db/test",
                "postgres://app:***@db/test",
            ),
            (
                "nats://s3cr3t-token@127.0.0.1:4222",
                "nats://***@127.0.0.1:4222",
            ),
            (
                "nats://user:pw@127.0.0.1:4222",
                "nats://user:***@127.0.0.1:4222",
            ),
            ("postgres://app@db/test", "postgres://app@db/test"),
            (
                "postgres://db/test?password=pw&sslmode=require",
                "postgres://db/test?password=***&sslmode=require",
            ),
            ("redis://h/?auth_token=abc", "redis://h/?auth_token=***"),
            ("x?sslpassword=abc", "x?sslpassword=***"),
            (
                "amqp://g:pw@h/v?results=redis://:pw2@h2:6379/1&x=1",
                "amqp://g:***@h/v?results=redis://:***@h2:6379/1&x=1",
            ),
            (
                "cannot open backend redis://:hunter2@127.0.0.1:6380: connection refused",
                "cannot open backend redis://:***@127.0.0.1:6380: connection refused",
            ),
            ("\"redis://:pw@h\" is bad", "\"redis://:***@h\" is bad"),
            ("no url at all", "no url at all"),
            ("./conveyor.db", "./conveyor.db"),
            ("a://", "a://"),
            ("://@", "://@"),
            ("redis://:@h", "redis://:@h"),
            (
                r#"Url { scheme: "nats", username: "tok", password: None, host: Some(Domain("h")) }"#,
                r#"Url { scheme: "nats", username: "***", password: None, host: Some(Domain("h")) }"#,
            ),
            (
                r#"Url { scheme: "redis", username: "app", password: Some("p\"w"), port: 1 }"#,
                r#"Url { scheme: "redis", username: "app", password: Some("***"), port: 1 }"#,
            ),
            (
                r#"Config { auth_token: "abc" }"#,
                r#"Config { auth_token: "***" }"#,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact_secrets(text), want, "{text}");
        }
        assert!(matches!(redact_secrets("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn odd_text_never_panics() {
        for text in [
            "://",
            "?=",
            "&password=",
            "é://é:é@é",
            "x://a:b@",
            "?token=é&",
            "redis://:pw",
        ] {
            let _ = redact_secrets(text);
        }
        // Every string of up to four of these pieces.
        let pieces = [
            "://",
            "nats",
            ":",
            "@",
            "é",
            "?",
            "&",
            "=",
            "password",
            "token",
            ": ",
            "Some(\"",
            "\"",
            "\\",
            "/",
            " ",
            "scheme: \"nats\"",
            "username",
        ];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| pieces.iter().map(move |p| format!("{t}{p}")))
                .collect();
            for t in &longer {
                let out = redact_secrets(t);
                assert!(out.len() <= t.len() + HIDDEN.len() * t.len(), "{t:?}");
            }
            texts = longer;
        }
    }
}
