//! The persistent-handler protocol: one JSON line per task to the child's
//! stdin, one JSON line per reply from its stdout.
//!
//! A request:
//!
//! ```json
//! {"id": 42, "handler": "resize", "attempt": 1, "deadline_ms": 1764000000000, "params": {"w": 640}}
//! ```
//!
//! `deadline_ms` is when the attempt times out, in milliseconds since the
//! Unix epoch (`null` without a timeout); `attempt` counts from 1. A reply
//! names the same `id` and says how the attempt ended:
//!
//! | reply | outcome |
//! |---|---|
//! | `{"id": 42, "result": VALUE}` | succeeded with `VALUE` (any JSON) |
//! | `{"id": 42, "error": "text"}` | failed: retried with the handler's backoff while attempts remain |
//! | `{"id": 42, "error": "text", "retry_after": 2.5}` | failed: retried after 2.5 s |
//! | `{"id": 42, "error": "text", "permanent": true}` | failed for good: dead-lettered, no retry |
//! | `{"id": 42, "discard": "text"}` | dropped: no retry, no dead letter |
//!
//! A stdout line that is not a reply to the running task (not a JSON object,
//! or another `id`) is logged as the task's output and the child's answer is
//! still awaited, so a stray `print` cannot lose a task. Lines are capped
//! ([`MAX_REPLY`]); a longer one fails the task and replaces the child.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use conveyor_core::TaskError;

/// The longest reply line accepted: 16 MiB.
pub const MAX_REPLY: usize = 16 << 20;

/// One task as the child reads it.
#[derive(Debug, Serialize)]
pub(crate) struct Request<'a> {
    /// The task's id.
    pub(crate) id: u64,
    /// The handler's name (one child program may serve several handlers).
    pub(crate) handler: &'a str,
    /// The attempt, from 1.
    pub(crate) attempt: u32,
    /// When the attempt times out, in ms since the Unix epoch.
    pub(crate) deadline_ms: Option<u64>,
    /// The task's params.
    pub(crate) params: &'a serde_json::Value,
}

impl Request<'_> {
    /// The request as one line, newline included.
    pub(crate) fn line(&self) -> Result<Vec<u8>, TaskError> {
        let mut line = serde_json::to_vec(self)
            .map_err(|e| TaskError::permanent(format!("cannot encode the task: {e}")))?;
        line.push(b'\n');
        Ok(line)
    }
}

/// Milliseconds since the Unix epoch at `remaining` from now.
pub(crate) fn deadline_ms(remaining: Duration) -> Option<u64> {
    let at = SystemTime::now().checked_add(remaining)?;
    let since = at.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// A reply line's fields (unknown fields are ignored, for newer helpers).
#[derive(Debug, Deserialize)]
struct Wire {
    id: serde_json::Value,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    retry_after: Option<f64>,
    #[serde(default)]
    permanent: bool,
    #[serde(default)]
    discard: Option<serde_json::Value>,
}

/// How a line from the child reads.
#[derive(Debug)]
pub(crate) enum Line {
    /// The reply to task `id`: its result or error.
    Reply(Result<serde_json::Value, TaskError>),
    /// Not a reply to this task: output to log.
    Other,
}

/// Reads one stdout line as a reply to task `id`.
pub(crate) fn parse(line: &[u8], id: u64) -> Line {
    let Ok(wire) = serde_json::from_slice::<Wire>(line) else {
        return Line::Other;
    };
    let same = match &wire.id {
        serde_json::Value::Number(n) => n.as_u64() == Some(id),
        serde_json::Value::String(s) => s.parse::<u64>().ok() == Some(id),
        _ => false,
    };
    if !same {
        return Line::Other;
    }
    Line::Reply(outcome(wire))
}

fn text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn outcome(wire: Wire) -> Result<serde_json::Value, TaskError> {
    if let Some(reason) = wire.discard {
        let reason = text(reason);
        return Err(TaskError::discard(if reason.is_empty() {
            "discarded by the handler".to_string()
        } else {
            reason
        }));
    }
    let Some(error) = wire.error else {
        return Ok(wire.result.unwrap_or(serde_json::Value::Null));
    };
    let message = match text(error) {
        m if m.is_empty() => "the handler reported an error".to_string(),
        m => m,
    };
    if wire.permanent {
        return Err(TaskError::permanent(message));
    }
    match wire.retry_after {
        Some(s) if s.is_finite() && s >= 0.0 => Err(TaskError::retry_after(
            Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX),
            message,
        )),
        _ => Err(TaskError::new(message)),
    }
}

/// The fuzz tests of this protocol's lines (docs/fuzzing.md).
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use conveyor_core::ErrorKind;

    use super::*;

    fn reply(line: &str) -> Result<serde_json::Value, TaskError> {
        match parse(line.as_bytes(), 7) {
            Line::Reply(r) => r,
            Line::Other => panic!("not a reply: {line}"),
        }
    }

    #[test]
    fn every_reply_form_has_its_outcome() {
        assert_eq!(reply(r#"{"id":7,"result":{"a":1}}"#).unwrap()["a"], 1);
        assert_eq!(reply(r#"{"id":"7"}"#).unwrap(), serde_json::Value::Null);
        let e = reply(r#"{"id":7,"error":"boom"}"#).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::Retryable, "boom"));
        let e = reply(r#"{"id":7,"error":"later","retry_after":1.5}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RetryAfter(Duration::from_millis(1500)));
        let e = reply(r#"{"id":7,"error":"no","permanent":true}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Permanent);
        let e = reply(r#"{"id":7,"discard":"stale"}"#).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::Discard, "stale"));
        let e = reply(r#"{"id":7,"error":{"code":3},"retry_after":-1}"#).unwrap_err();
        assert_eq!(
            (e.kind(), e.message()),
            (ErrorKind::Retryable, r#"{"code":3}"#)
        );
    }

    #[test]
    fn other_lines_are_not_replies() {
        for line in [
            "hello",
            "[1]",
            r#"{"id":8,"result":1}"#,
            r#"{"result":1}"#,
            "{",
        ] {
            assert!(matches!(parse(line.as_bytes(), 7), Line::Other), "{line}");
        }
    }

    #[test]
    fn a_request_is_one_line() {
        let params = serde_json::json!({"s": "a\nb"});
        let req = Request {
            id: 1,
            handler: "h",
            attempt: 2,
            deadline_ms: None,
            params: &params,
        };
        let line = req.line().unwrap();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
    }
}
