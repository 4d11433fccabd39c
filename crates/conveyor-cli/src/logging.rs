//! The command's log: `RUST_LOG` (or `CONVEYOR_LOG`) picks what is logged,
//! `--log-format` how (`text` for people, `json` for log pipelines: one
//! object per line with the event's fields). Logs go to stderr; stdout stays
//! for what a command prints as its answer.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event, with its fields as `key=value`.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message and
    /// fields; an event inside a task's attempt also carries `span` (the
    /// task's `id`, `handler`, `attempt` and, with traces on, `trace_id`).
    Json,
}

/// The filter: `RUST_LOG` first, then `CONVEYOR_LOG`, else `info`. A filter
/// that does not parse is reported and `info` used.
fn filter() -> EnvFilter {
    for var in ["RUST_LOG", "CONVEYOR_LOG"] {
        if let Ok(text) = std::env::var(var) {
            match EnvFilter::try_new(&text) {
                Ok(f) => return f,
                Err(e) => {
                    eprintln!("conveyor: {var}={text:?} is not a log filter ({e}); using info")
                }
            }
        }
    }
    EnvFilter::new("info")
}

/// A writer that hides the credentials of any URL in what it writes
/// ([`conveyor::redact_secrets`]): the formatter writes each event in one
/// call, so a line is redacted whole, whatever field or error carried the
/// URL.
struct Redacting<W>(W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self
                .0
                .write_all(conveyor::redact_secrets(text).as_bytes())
                .map(|()| buf.len()),
            Err(_) => self.0.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Installs the subscriber for the whole process.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(|| Redacting(std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            // An event inside a task's attempt carries the `task` span:
            // its id, handler, attempt and (with traces) trace id.
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
