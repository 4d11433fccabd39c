//! `conveyor status`: counts by state per queue.

use std::process::ExitCode;
use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor::{TaskState, Timestamp};
use serde_json::json;

use crate::cli::StatusArgs;

/// Prints the table (or JSON).
pub async fn run(backend: Arc<dyn Backend>, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let stats = backend.stats().await?;
    let now = Timestamp::now();
    if args.json {
        for s in &stats {
            let counts: serde_json::Map<String, serde_json::Value> = TaskState::ALL
                .iter()
                .map(|st| (st.as_str().to_string(), json!(s.count(*st))))
                .collect();
            let line = json!({
                "queue": s.queue,
                "counts": counts,
                "in_flight": s.count(TaskState::Running),
                "dead": s.count(TaskState::Dead),
                "oldest_ready_age_ms": s.oldest_ready.map(|t| now.since(t).as_millis() as u64),
            });
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if stats.is_empty() {
        println!("no tasks in {}", backend.kind());
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = format!("{:<20}", "QUEUE");
    for st in TaskState::ALL {
        header.push_str(&format!(" {:>10}", st.as_str().to_uppercase()));
    }
    header.push_str(&format!(" {:>12}", "OLDEST-READY"));
    println!("{header}");
    for s in &stats {
        let mut row = format!("{:<20}", s.queue);
        for st in TaskState::ALL {
            row.push_str(&format!(" {:>10}", s.count(st)));
        }
        let age = s
            .oldest_ready
            .map(|t| humantime::format_duration(round_secs(now.since(t))).to_string())
            .unwrap_or_else(|| "-".into());
        row.push_str(&format!(" {age:>12}"));
        println!("{row}");
    }
    Ok(ExitCode::SUCCESS)
}

fn round_secs(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(d.as_secs())
}
