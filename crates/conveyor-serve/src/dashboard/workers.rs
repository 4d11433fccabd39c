//! `/workers`: the registry — every live worker and the ones gone in the
//! last day (stopped cleanly, or silent since they were killed). Live.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use conveyor_core::Timestamp;
use conveyor_core::{WorkerInfo, FORGET_WORKERS_AFTER};

use super::chrome::{age, render, when, Chrome};
use crate::state::AppState;

/// One worker's row.
pub(crate) struct WorkerRow {
    id: String,
    host: String,
    pid: u32,
    version: String,
    queues: String,
    slots: u32,
    running: u64,
    reserved: u64,
    completed: u64,
    failed: u64,
    started: String,
    heartbeat: String,
    /// `alive`, `stopped` or `silent`.
    status: &'static str,
}

impl WorkerRow {
    fn new(w: WorkerInfo, now: Timestamp) -> WorkerRow {
        let status = if w.is_alive(now) {
            "alive"
        } else if w.stopped {
            "stopped"
        } else {
            "silent"
        };
        WorkerRow {
            status,
            started: when(w.started_at),
            heartbeat: format!("{} ago", age(now, w.heartbeat_at)),
            queues: w.queues.join(", "),
            id: w.id,
            host: w.host,
            pid: w.pid,
            version: w.version,
            slots: w.slots,
            running: w.running,
            reserved: w.reserved,
            completed: w.completed,
            failed: w.failed,
        }
    }
}

/// The live part of the page.
#[derive(Template)]
#[template(path = "workers_body.html")]
pub(crate) struct WorkersBody {
    alive: Vec<WorkerRow>,
    gone: Vec<WorkerRow>,
    /// Why there is no list, when there is none.
    error: Option<String>,
    read_at: String,
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    page: Chrome,
    body: String,
}

/// The workers, read now.
pub(crate) async fn body(state: &AppState) -> WorkersBody {
    let now = Timestamp::now();
    let read = async {
        state
            .backend
            .registry()?
            .workers(now.minus(FORGET_WORKERS_AFTER))
            .await
    };
    let (mut alive, mut gone, mut error) = (Vec::new(), Vec::new(), None);
    match read.await {
        Ok(workers) => {
            for w in workers {
                let row = WorkerRow::new(w, now);
                if row.status == "alive" {
                    alive.push(row);
                } else {
                    gone.push(row);
                }
            }
        }
        Err(e) => error = Some(e.chain().to_string()),
    }
    WorkersBody {
        alive,
        gone,
        error,
        read_at: when(now),
    }
}

/// `GET /workers`.
pub(crate) async fn page(State(state): State<AppState>) -> Response {
    let body = body(&state).await;
    let body = askama::Template::render(&body)
        .unwrap_or_else(|e| format!("<p class=\"error\">the list failed to render: {e}</p>"));
    render(&WorkersPage {
        page: Chrome::new(&state, "Workers", "workers"),
        body,
    })
}
