//! The trace context a task carries from its enqueue to its attempts: a W3C
//! Trace Context `traceparent`, and its `tracestate` when there is one. Core
//! only checks and stores it; the OpenTelemetry side lives in `conveyor`'s
//! `otel` feature.

use std::fmt;

/// The longest `tracestate` kept (the W3C limit is 32 members; 512 characters
/// is what the specification asks a propagator to keep at least).
pub const MAX_TRACESTATE: usize = 512;

/// A validated W3C trace context: `traceparent` (version 00,
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase, ids not
/// all zero) and an optional `tracestate` (printable ASCII, at most
/// [`MAX_TRACESTATE`] characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

/// Why a trace context was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trace context: {0}")]
pub struct InvalidTraceContext(&'static str);

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceContext {
    /// A context from a `traceparent` header and an optional `tracestate`
    /// header (an empty `tracestate` counts as none).
    pub fn new(
        traceparent: impl Into<String>,
        tracestate: Option<String>,
    ) -> Result<Self, InvalidTraceContext> {
        let traceparent = traceparent.into();
        let parts: Vec<&str> = traceparent.split('-').collect();
        let [version, trace_id, span_id, flags] = parts.as_slice() else {
            return Err(InvalidTraceContext(
                "traceparent needs four dash-separated fields",
            ));
        };
        if *version != "00" {
            return Err(InvalidTraceContext("only traceparent version 00 is kept"));
        }
        if trace_id.len() != 32 || !is_lower_hex(trace_id) || trace_id.bytes().all(|b| b == b'0') {
            return Err(InvalidTraceContext(
                "trace id must be 32 lowercase hex digits, not all zero",
            ));
        }
        if span_id.len() != 16 || !is_lower_hex(span_id) || span_id.bytes().all(|b| b == b'0') {
            return Err(InvalidTraceContext(
                "parent id must be 16 lowercase hex digits, not all zero",
            ));
        }
        if flags.len() != 2 || !is_lower_hex(flags) {
            return Err(InvalidTraceContext(
                "trace flags must be 2 lowercase hex digits",
            ));
        }
        let tracestate = tracestate.filter(|s| !s.is_empty());
        if let Some(s) = &tracestate {
            if s.len() > MAX_TRACESTATE {
                return Err(InvalidTraceContext(
                    "tracestate is longer than 512 characters",
                ));
            }
            if !s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return Err(InvalidTraceContext("tracestate must be printable ASCII"));
            }
        }
        Ok(Self {
            traceparent,
            tracestate,
        })
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` header value, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id (32 lowercase hex digits).
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The id of the span that enqueued the task (16 lowercase hex digits).
    pub fn span_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    /// The trace flags byte (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.traceparent[53..55], 16).unwrap_or(0)
    }

    /// The one-string form backends store: the `traceparent`, then a newline
    /// and the `tracestate` when there is one (neither may hold a newline).
    pub fn encode(&self) -> String {
        match &self.tracestate {
            Some(s) => format!("{}\n{s}", self.traceparent),
            None => self.traceparent.clone(),
        }
    }

    /// Reads back what [`TraceContext::encode`] wrote.
    pub fn decode(stored: &str) -> Result<Self, InvalidTraceContext> {
        match stored.split_once('\n') {
            Some((parent, state)) => Self::new(parent, Some(state.to_string())),
            None => Self::new(stored, None),
        }
    }

    /// Reads a stored column or field back, leniently: a value that does not
    /// parse (written by something else) is dropped rather than failing the
    /// read of the whole task.
    pub fn from_stored(stored: Option<&str>) -> Option<Self> {
        stored.and_then(|s| Self::decode(s).ok())
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_round_trips() {
        let c = TraceContext::new(TP, Some("congo=t61rcWkgMzE".into())).expect("valid");
        assert_eq!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id(), "00f067aa0ba902b7");
        assert_eq!(c.flags(), 1);
        assert_eq!(TraceContext::decode(&c.encode()), Ok(c));
        let plain = TraceContext::new(TP, Some(String::new())).expect("valid");
        assert_eq!(plain.tracestate(), None);
        assert_eq!(TraceContext::decode(&plain.encode()), Ok(plain));
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::new(bad, None).is_err(), "{bad}");
        }
        assert!(TraceContext::new(TP, Some("a=\nb".into())).is_err());
        assert!(TraceContext::new(TP, Some("x".repeat(513))).is_err());
        assert_eq!(TraceContext::from_stored(Some("junk")), None);
    }
}
