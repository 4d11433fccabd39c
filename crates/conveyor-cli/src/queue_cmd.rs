//! `conveyor queue pause|resume|list`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor::TaskState;
use serde_json::json;

use crate::cli::QueueCommand;

/// One queue as listed: ready and reserved tasks, and whether it is paused.
#[derive(Default)]
struct Row {
    available: u64,
    reserved: u64,
    paused: bool,
}

/// Runs one queue command.
pub async fn run(backend: Arc<dyn Backend>, cmd: QueueCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        QueueCommand::Pause { name } => {
            let changed = backend.pause_queue(&name).await?;
            if changed {
                println!("paused {name}");
            } else {
                println!("{name} was paused already");
            }
        }
        QueueCommand::Resume { name } => {
            let changed = backend.resume_queue(&name).await?;
            if changed {
                println!("resumed {name}");
            } else {
                println!("{name} was not paused");
            }
        }
        QueueCommand::List { json } => {
            let mut rows: BTreeMap<String, Row> = BTreeMap::new();
            for s in backend.stats().await? {
                let row = rows.entry(s.queue.clone()).or_default();
                row.available = s.count(TaskState::Available);
                row.reserved = s.count(TaskState::Running);
            }
            // A backend that cannot pause has no paused queue to list.
            if let Ok(control) = backend.queue_control() {
                for name in control.paused().await? {
                    rows.entry(name).or_default().paused = true;
                }
            }
            if json {
                for (queue, r) in &rows {
                    let line = json!({
                        "queue": queue,
                        "paused": r.paused,
                        "available": r.available,
                        "reserved": r.reserved,
                    });
                    println!("{line}");
                }
            } else if rows.is_empty() {
                println!("no queues in {}", backend.kind());
            } else {
                println!(
                    "{:<20} {:>8} {:>10} {:>10}",
                    "QUEUE", "STATE", "AVAILABLE", "RESERVED"
                );
                for (queue, r) in &rows {
                    let state = if r.paused { "paused" } else { "running" };
                    println!(
                        "{queue:<20} {state:>8} {:>10} {:>10}",
                        r.available, r.reserved
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
