//! `conveyor show ID`: everything the store knows about one task — where it
//! is, its params, attempts (each one's worker, start, end and outcome, where
//! the backend keeps history), keys, times, result and last error.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use conveyor::durable::{AttemptRecord, Backend, TaskRecord};
use conveyor::{TaskId, Timestamp};
use serde_json::{json, Value};

use crate::cli::ShowArgs;
use crate::verdict::decoded;

/// Exit status when no task has the id.
const UNKNOWN: u8 = 5;

/// `t` as RFC 3339 in UTC, to the millisecond.
pub(crate) fn time(t: Timestamp) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(t.0).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

fn ago(t: Timestamp, now: Timestamp) -> String {
    if t > now {
        let d = Duration::from_secs(t.since(now).as_secs());
        format!("in {}", humantime::format_duration(d))
    } else {
        let d = Duration::from_secs(now.since(t).as_secs());
        format!("{} ago", humantime::format_duration(d))
    }
}

/// The record as one JSON object.
fn as_json(r: &TaskRecord) -> Value {
    json!({
        "id": r.id.0,
        "queue": r.queue,
        "handler": r.handler,
        "state": r.state.as_str(),
        "params": decoded(&r.payload),
        "priority": r.priority,
        "attempts": r.attempts,
        "max_attempts": r.max_attempts,
        "ordering_key": r.ordering_key,
        "unique_key": r.unique_key,
        "enqueued_at": time(r.created_at),
        "run_at": time(r.run_at),
        "finished_at": r.finished_at.map(time),
        "keep_ms": r.keep.map(|k| u64::try_from(k.as_millis()).unwrap_or(u64::MAX)),
        "expires_at": r.expires_at.map(time),
        "result": r.result.as_deref().map(decoded),
        "error": r.error,
        "history": r.history.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

/// One attempt as a JSON object.
fn attempt_json(a: &AttemptRecord) -> Value {
    json!({
        "attempt": a.attempt,
        "worker": a.worker,
        "started_at": time(a.started_at),
        "ended_at": a.ended_at.map(time),
        "outcome": a.outcome.label(),
        "error": a.outcome.error(),
    })
}

/// One attempt as a line: `2  worker-id  start → end (took)  outcome: error`.
fn attempt_line(a: &AttemptRecord, now: Timestamp) -> String {
    let end = a.ended_at.map(time).unwrap_or_else(|| "…".into());
    let took = humantime::format_duration(Duration::from_millis(
        u64::try_from(a.duration(now).as_millis()).unwrap_or(u64::MAX),
    ));
    let outcome = match a.outcome.error() {
        Some(e) => format!(
            "{}: {}",
            a.outcome.label(),
            e.lines().next().unwrap_or_default()
        ),
        None => a.outcome.label().to_string(),
    };
    format!(
        "{:>3}  {}  {} → {end} ({took})  {outcome}",
        a.attempt,
        a.worker.as_deref().unwrap_or("-"),
        time(a.started_at),
    )
}

/// When the finished task goes: its own expiry, else the worker's
/// retention; for an unfinished one, its own keep if it has one.
fn kept_until(r: &TaskRecord, now: Timestamp) -> String {
    let keep = |k: Duration| format!("{} after it finishes", humantime::format_duration(k));
    match (r.expires_at, r.finished_at, r.keep) {
        (Some(t), _, _) => format!("{} ({})", time(t), ago(t, now)),
        (None, Some(_), _) => "as the workers' retention says".to_string(),
        (None, None, Some(k)) => keep(k),
        (None, None, None) => "-".to_string(),
    }
}

/// Prints the task.
pub async fn run(backend: Arc<dyn Backend>, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let id = TaskId(args.id);
    let Some(r) = backend.get(id).await? else {
        eprintln!(
            "conveyor: no task {id} in this {} backend (never enqueued, or pruned)",
            backend.kind()
        );
        return Ok(ExitCode::from(UNKNOWN));
    };
    if args.json {
        println!("{}", as_json(&r));
        return Ok(ExitCode::SUCCESS);
    }
    let now = Timestamp::now();
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let rows = [
        ("queue", r.queue.clone()),
        ("handler", r.handler.clone()),
        ("state", r.state.to_string()),
        ("attempts", format!("{} of {}", r.attempts, r.max_attempts)),
        ("priority", r.priority.to_string()),
        ("ordering key", or_dash(r.ordering_key.as_deref())),
        ("unique key", or_dash(r.unique_key.as_deref())),
        (
            "enqueued",
            format!("{} ({})", time(r.created_at), ago(r.created_at, now)),
        ),
        (
            "run at",
            format!("{} ({})", time(r.run_at), ago(r.run_at, now)),
        ),
        (
            "finished",
            r.finished_at
                .map(|t| format!("{} ({})", time(t), ago(t, now)))
                .unwrap_or_else(|| "-".into()),
        ),
        ("kept until", kept_until(&r, now)),
        ("params", decoded(&r.payload).to_string()),
        (
            "result",
            r.result
                .as_deref()
                .map(|b| decoded(b).to_string())
                .unwrap_or_else(|| "-".into()),
        ),
        ("error", or_dash(r.error.as_deref())),
    ];
    println!("task {id}");
    for (name, value) in rows {
        // A multi-line value (a traceback) stays in its column.
        println!("  {name:<13} {}", value.replace('\n', "\n                "));
    }
    if !r.history.is_empty() {
        println!("  history");
        for a in &r.history {
            println!("    {}", attempt_line(a, now));
        }
    } else if !backend.capabilities().history {
        println!(
            "  history       - (the {} backend keeps none)",
            backend.kind()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use conveyor::durable::AttemptOutcome;

    use super::*;

    #[test]
    fn an_attempt_shows_its_worker_times_and_outcome() {
        let a = AttemptRecord {
            attempt: 2,
            worker: Some("host:7:ab".into()),
            started_at: Timestamp(1_000),
            ended_at: Some(Timestamp(3_500)),
            outcome: AttemptOutcome::Failed {
                error: "refused\nat line 2".into(),
            },
        };
        let line = attempt_line(&a, Timestamp(9_000));
        assert_eq!(
            line,
            "  2  host:7:ab  1970-01-01T00:00:01.000Z → 1970-01-01T00:00:03.500Z (2s 500ms)  failed: refused"
        );
        let json = attempt_json(&a);
        assert_eq!(json["worker"], "host:7:ab");
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["error"], "refused\nat line 2");
        assert_eq!(json["ended_at"], "1970-01-01T00:00:03.500Z");
        let running = AttemptRecord {
            ended_at: None,
            outcome: AttemptOutcome::Running,
            worker: None,
            ..a
        };
        let line = attempt_line(&running, Timestamp(2_000));
        assert!(line.ends_with("→ … (1s)  running"), "{line}");
        assert!(line.contains("  -  "), "{line}");
    }
}
