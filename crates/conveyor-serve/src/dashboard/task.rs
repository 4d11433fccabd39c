//! `/tasks/{id}`: one task — its params, result and last error, its
//! timeline with every attempt (worker, start, end, duration, outcome), the
//! worker that runs it now, and the actions its state allows.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use conveyor_core::{AttemptRecord, TaskRecord};
use conveyor_core::{TaskState, Timestamp, Transition};
use serde_json::Value;

use super::chrome::{age, error_page, render, when, Chrome};
use super::overview::NoticeQuery;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::state::AppState;

/// One line of the timeline.
pub(crate) struct Moment {
    what: String,
    at: String,
    ago: String,
}

/// One attempt, as its row of the attempts table.
pub(crate) struct AttemptRow {
    number: u32,
    worker: String,
    start: String,
    end: String,
    took: String,
    /// The outcome's label; its class is the same with `-` for spaces.
    outcome: &'static str,
    class: String,
    error: Option<String>,
}

impl AttemptRow {
    fn new(a: &AttemptRecord, now: Timestamp) -> Self {
        let outcome = a.outcome.label();
        AttemptRow {
            number: a.attempt,
            worker: a.worker.clone().unwrap_or_else(|| "-".into()),
            start: when(a.started_at),
            end: a.ended_at.map(when).unwrap_or_else(|| "-".into()),
            took: took(a.duration(now)),
            outcome,
            class: outcome.replace(' ', "-"),
            error: a.outcome.error().map(str::to_string),
        }
    }
}

/// A duration for people: `35 ms`, `2.4 s`, `3m 5s`.
fn took(d: std::time::Duration) -> String {
    match d.as_millis() {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", d.as_secs_f64()),
        _ => age(Timestamp(0).plus(d), Timestamp(0)),
    }
}

/// The page.
#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    page: Chrome,
    id: u64,
    queue: String,
    handler: String,
    state: &'static str,
    priority: i32,
    attempts: u32,
    max_attempts: u32,
    unique_key: Option<String>,
    ordering_key: Option<String>,
    params: String,
    result: Option<String>,
    error: Option<String>,
    timeline: Vec<Moment>,
    /// Every attempt the store keeps, oldest first.
    attempt_rows: Vec<AttemptRow>,
    /// The worker holding the task now, while it runs.
    worker: Option<String>,
    /// The backend keeps every attempt's history.
    keeps_history: bool,
    here: String,
    can_cancel: bool,
    can_retry: bool,
}

/// Bytes as indented JSON when they are JSON, else as text.
fn pretty(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// What the record tells of the task's life, in order.
fn timeline(r: &TaskRecord, now: Timestamp) -> Vec<Moment> {
    let moment = |what: String, t: Timestamp| Moment {
        what,
        at: when(t),
        ago: if t <= now {
            format!("{} ago", age(now, t))
        } else {
            format!("in {}", age(t, now))
        },
    };
    let mut moments = vec![moment(format!("enqueued to {}", r.queue), r.created_at)];
    for a in &r.history {
        let by = a
            .worker
            .as_deref()
            .map(|w| format!(" on {w}"))
            .unwrap_or_default();
        moments.push(moment(
            format!("attempt {} started{by}", a.attempt),
            a.started_at,
        ));
        if let Some(end) = a.ended_at {
            let what = match a.outcome.error() {
                Some(e) => format!(
                    "attempt {} {}: {}",
                    a.attempt,
                    a.outcome.label(),
                    first_line(e)
                ),
                None => format!("attempt {} {}", a.attempt, a.outcome.label()),
            };
            moments.push(moment(what, end));
        }
    }
    let started = r.attempts > 0 && r.history.is_empty();
    match r.state {
        TaskState::Scheduled => moments.push(moment("due".into(), r.run_at)),
        TaskState::Retrying => moments.push(moment(
            format!("attempt {} failed; next attempt due", r.attempts),
            r.run_at,
        )),
        TaskState::Available if r.run_at > r.created_at && r.history.is_empty() => {
            moments.push(moment("became ready".into(), r.run_at))
        }
        _ => {}
    }
    if started && r.state == TaskState::Running {
        moments.push(Moment {
            what: format!("attempt {} of {} running", r.attempts, r.max_attempts),
            at: String::new(),
            ago: String::new(),
        });
    }
    if let Some(t) = r.finished_at {
        let what = match r.state {
            TaskState::Completed => format!("completed on attempt {}", r.attempts),
            TaskState::Dead if r.attempts == 1 => "dead after 1 attempt".to_string(),
            TaskState::Dead => format!("dead after {} attempts", r.attempts),
            TaskState::Cancelled => "cancelled (or discarded by its handler)".to_string(),
            s => s.as_str().to_string(),
        };
        moments.push(moment(what, t));
    }
    if let Some(t) = r.expires_at.filter(|_| r.finished_at.is_some()) {
        moments.push(moment(
            "kept until then (its own keep, or its handler's retention)".to_string(),
            t,
        ));
    }
    moments
}

/// The first line of a text, cut to 120 characters (the table has it all).
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// `GET /tasks/{id}`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let read = async {
        let id = crate::api::tasks::parse_id(&id)?;
        state
            .backend
            .get(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no task {}", id.0)))
    };
    let record = match read.await {
        Ok(r) => r,
        Err(e) => return error_page(&state, e),
    };
    let now = Timestamp::now();
    let page = Chrome::new(&state, format!("Task {}", record.id.0), "tasks").notice(query.notice);
    let can_act = !page.read_only && state.backend.administration().is_ok();
    render(&TaskPage {
        id: record.id.0,
        queue: record.queue.clone(),
        handler: record.handler.clone(),
        state: record.state.as_str(),
        priority: record.priority,
        attempts: record.attempts,
        max_attempts: record.max_attempts,
        unique_key: record.unique_key.clone(),
        ordering_key: record.ordering_key.clone(),
        params: pretty(&record.payload),
        result: record.result.as_deref().map(pretty),
        error: record.error.clone(),
        timeline: timeline(&record, now),
        attempt_rows: record
            .history
            .iter()
            .map(|a| AttemptRow::new(a, now))
            .collect(),
        worker: record
            .running_attempt()
            .map(|a| a.worker.clone().unwrap_or_else(|| "(not named)".into())),
        keeps_history: state.backend.capabilities().history,
        here: format!("/tasks/{}", record.id.0),
        can_cancel: can_act && Transition::Cancel.sources().contains(&record.state),
        can_retry: can_act && record.state == TaskState::Dead,
        page,
    })
}
