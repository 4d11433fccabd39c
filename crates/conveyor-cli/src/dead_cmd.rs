//! `conveyor dead list|retry|purge`.

use std::process::ExitCode;
use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor::durable::ListParams;
use conveyor::{TaskId, TaskState};
use serde_json::json;

use crate::cli::DeadCommand;

/// Runs one dead-letter command.
pub async fn run(backend: Arc<dyn Backend>, cmd: DeadCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeadCommand::List { queue, limit, json } => {
            let dead = backend
                .list(
                    &ListParams::new(TaskState::Dead)
                        .queue_opt(queue.as_deref())
                        .limit(limit),
                )
                .await?;
            for t in &dead {
                let error = t.error.clone().unwrap_or_default();
                if json {
                    let line = json!({
                        "id": t.id.0,
                        "queue": t.queue,
                        "handler": t.handler,
                        "attempts": t.attempts,
                        "error": error,
                        "payload": String::from_utf8_lossy(&t.payload),
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{}\t{}\t{}\tattempts={}\t{}",
                        t.id, t.queue, t.handler, t.attempts, error
                    );
                }
            }
            if !json && dead.is_empty() {
                println!("no dead tasks");
            }
        }
        DeadCommand::Retry { ids, all, queue } => {
            let ids: Vec<TaskId> = if all {
                let mut ids = Vec::new();
                loop {
                    let page = backend
                        .list(
                            &ListParams::new(TaskState::Dead)
                                .queue_opt(queue.as_deref())
                                .limit(1000),
                        )
                        .await?;
                    if page.is_empty() {
                        break;
                    }
                    let batch: Vec<TaskId> = page.iter().map(|t| t.id).collect();
                    let moved = backend.requeue_dead(&batch).await?;
                    ids.extend(batch);
                    if moved == 0 {
                        break;
                    }
                }
                println!("requeued {}", ids.len());
                return Ok(ExitCode::SUCCESS);
            } else {
                ids.into_iter().map(TaskId).collect()
            };
            if ids.is_empty() {
                anyhow::bail!("name task ids, or --all");
            }
            let n = backend.requeue_dead(&ids).await?;
            println!("requeued {n}");
            if (n as usize) < ids.len() {
                eprintln!(
                    "conveyor: {} of the ids were not dead tasks",
                    ids.len() - n as usize
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        DeadCommand::Purge { queue } => {
            let n = backend.purge_dead(queue.as_deref()).await?;
            println!("purged {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
