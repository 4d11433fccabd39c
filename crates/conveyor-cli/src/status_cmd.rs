//! `conveyor status`: counts by state per queue, and the workers the backend
//! has heard from — which of the reserved tasks are really running.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::{Backend, WorkerInfo};
use conveyor::{TaskState, Timestamp};
use serde_json::json;

use crate::cli::StatusArgs;

/// Workers gone (stopped or silent) longer ago than this are not shown.
const RECENTLY_GONE: Duration = Duration::from_secs(3600);

/// The column header of a state: the store's `running` is a task a worker
/// reserved, whether its attempt has started or not.
fn header(st: TaskState) -> &'static str {
    match st {
        TaskState::Scheduled => "SCHEDULED",
        TaskState::Available => "AVAILABLE",
        TaskState::Running => "RESERVED",
        TaskState::Retrying => "RETRYING",
        TaskState::Completed => "COMPLETED",
        TaskState::Dead => "DEAD",
        TaskState::Cancelled => "CANCELLED",
    }
}

/// A worker's state for people: alive, stopped, or silent (killed, or cut
/// off from the backend).
fn worker_state(w: &WorkerInfo, now: Timestamp) -> &'static str {
    if w.stopped {
        "stopped"
    } else if w.is_alive(now) {
        "alive"
    } else {
        "silent"
    }
}

/// Prints the table (or JSON).
pub async fn run(backend: Arc<dyn Backend>, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let stats = backend.stats().await?;
    let now = Timestamp::now();
    let workers = match backend.registry() {
        Ok(r) => Some(r.workers(now.minus(RECENTLY_GONE)).await?),
        Err(_) => None,
    };
    let queues: Vec<String> = stats.iter().map(|s| s.queue.clone()).collect();
    let unserved = conveyor::durable::unserved(backend.as_ref(), &queues, now).await?;
    if args.json {
        for s in &stats {
            let counts: serde_json::Map<String, serde_json::Value> = TaskState::ALL
                .iter()
                .map(|st| (st.as_str().to_string(), json!(s.count(*st))))
                .collect();
            let line = json!({
                "queue": s.queue,
                "counts": counts,
                "reserved": s.count(TaskState::Running),
                "in_flight": s.count(TaskState::Running),
                "dead": s.count(TaskState::Dead),
                "oldest_ready_age_ms": s.oldest_ready.map(|t| now.since(t).as_millis() as u64),
            });
            println!("{line}");
        }
        for w in workers.iter().flatten() {
            let mut value = serde_json::to_value(w)?;
            if let Some(map) = value.as_object_mut() {
                map.insert("state".into(), json!(worker_state(w, now)));
            }
            println!("{}", json!({ "worker": value }));
        }
        for u in &unserved {
            let line = json!({ "unserved": {
                "queue": u.queue, "handler": u.handler, "waiting": u.waiting,
            }});
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if stats.is_empty() {
        println!("no tasks in {}", backend.kind());
    } else {
        let mut head = format!("{:<20}", "QUEUE");
        for st in TaskState::ALL {
            head.push_str(&format!(" {:>10}", header(st)));
        }
        head.push_str(&format!(" {:>12}", "OLDEST-READY"));
        println!("{head}");
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
    }
    match workers {
        None => println!(
            "\nthe {} backend keeps no worker registry: RESERVED counts tasks taken by a worker, \
             started or not",
            backend.kind()
        ),
        Some(workers) => print_workers(&workers, now),
    }
    if !unserved.is_empty() {
        println!("\nwaiting for a handler no live worker of their queue has:");
        for u in &unserved {
            let more = if u.waiting >= conveyor::durable::UNSERVED_SCAN as u64 {
                " or more"
            } else {
                ""
            };
            println!(
                "  queue {}: {} task{}{more} of handler {}",
                u.queue,
                u.waiting,
                if u.waiting == 1 { "" } else { "s" },
                u.handler
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_workers(workers: &[WorkerInfo], now: Timestamp) {
    let alive: Vec<&WorkerInfo> = workers.iter().filter(|w| w.is_alive(now)).collect();
    let running: u64 = alive.iter().map(|w| w.running).sum();
    let reserved: u64 = alive.iter().map(|w| w.reserved).sum();
    println!(
        "\n{} worker{} alive: {running} task{} running, {} reserved and waiting for a limit or a \
         free slot",
        alive.len(),
        if alive.len() == 1 { "" } else { "s" },
        if running == 1 { "" } else { "s" },
        reserved.saturating_sub(running),
    );
    if workers.is_empty() {
        return;
    }
    println!(
        "{:<32} {:>7} {:<16} {:>5} {:>7} {:>8} {:>9} {:>9}  {:<7}",
        "WORKER",
        "PID",
        "QUEUES",
        "SLOTS",
        "RUNNING",
        "RESERVED",
        "COMPLETED",
        "LAST-SEEN",
        "STATE"
    );
    for w in workers {
        println!(
            "{:<32} {:>7} {:<16} {:>5} {:>7} {:>8} {:>9} {:>9}  {:<7}",
            w.id,
            w.pid,
            w.queues.join(","),
            w.slots,
            w.running,
            w.reserved,
            w.completed,
            format!("{}s ago", now.since(w.heartbeat_at).as_secs()),
            worker_state(w, now),
        );
    }
}

fn round_secs(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(d.as_secs())
}
