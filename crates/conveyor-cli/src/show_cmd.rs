//! `conveyor show ID`: everything the store knows about one task — where it
//! is, its params, attempts, keys, times, result and last error.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use conveyor::durable::{Backend, TaskRecord};
use conveyor::{TaskId, Timestamp};
use serde_json::{json, Value};

use crate::cli::ShowArgs;
use crate::verdict::decoded;

/// Exit status when no task has the id.
const UNKNOWN: u8 = 5;

fn time(t: Timestamp) -> String {
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
        "result": r.result.as_deref().map(decoded),
        "error": r.error,
    })
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
        println!("  {name:<13} {value}");
    }
    Ok(ExitCode::SUCCESS)
}
