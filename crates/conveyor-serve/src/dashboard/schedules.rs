//! `/schedules`: every periodic schedule with its timing, its next fire,
//! its last fire and that fire's outcome, and buttons to pause, resume or
//! fire one now (`/actions/schedules/{name}/…`).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Form;
use conveyor_core::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use super::actions::{answer, Back};
use super::chrome::{render, when, Chrome};
use super::notice::Notice;
use crate::api::schedules::{all, unknown, ScheduleView};
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

/// One schedule's row.
pub(crate) struct ScheduleRow {
    name: String,
    timing: String,
    handler: String,
    queue: String,
    paused: bool,
    next: String,
    last: String,
    task: Option<String>,
    /// The last fire's task state, or empty.
    outcome: String,
    missed: u64,
}

impl From<ScheduleView> for ScheduleRow {
    fn from(v: ScheduleView) -> ScheduleRow {
        let field = |k: &str| {
            v.declared
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ScheduleRow {
            handler: field("handler"),
            queue: match field("queue") {
                q if q.is_empty() => conveyor_core::DEFAULT_QUEUE.to_string(),
                q => q,
            },
            timing: v.timing,
            paused: v.paused,
            next: match (v.paused, v.next_fire_ms) {
                (true, _) => "paused".to_string(),
                (false, Some(ms)) => when(Timestamp(ms)),
                (false, None) => "never".to_string(),
            },
            last: v
                .last_fire_ms
                .map(|ms| when(Timestamp(ms)))
                .unwrap_or_default(),
            task: v.last_task,
            outcome: v.last_state.unwrap_or_default(),
            missed: v.missed,
            name: v.name,
        }
    }
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    page: Chrome,
    rows: Vec<ScheduleRow>,
    /// Why there is no list, when there is none.
    error: Option<String>,
    read_at: String,
}

/// The page's query: the notice after an action.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    notice: Option<String>,
}

/// `GET /schedules`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Response {
    let (rows, error) = match all(state.backend.as_ref()).await {
        Ok(views) => (views.into_iter().map(ScheduleRow::from).collect(), None),
        Err(e) => (Vec::new(), Some(e.chain().to_string())),
    };
    render(&SchedulesPage {
        page: Chrome::new(&state, "Schedules", "schedules").notice(query.notice),
        rows,
        error,
        read_at: when(Timestamp::now()),
    })
}

/// `POST /actions/schedules/{name}/pause` and `…/resume`.
async fn set_paused(state: &AppState, name: &str, paused: bool) -> Result<Notice, ApiError> {
    match state
        .backend
        .schedules()?
        .pause_schedule(name, paused)
        .await?
    {
        Some(_) if paused => Ok(Notice::SchedulePaused),
        Some(_) => Ok(Notice::ScheduleResumed),
        None => Err(unknown(name)),
    }
}

/// `POST /actions/schedules/{name}/pause`: it fires nothing until resumed.
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    let did = set_paused(&state, &name, true).await;
    answer(&state, form.back(), did)
}

/// `POST /actions/schedules/{name}/resume`.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    let did = set_paused(&state, &name, false).await;
    answer(&state, form.back(), did)
}

/// `POST /actions/schedules/{name}/trigger`: one fire now.
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    let did = async {
        match state.backend.schedules()?.trigger_schedule(&name).await? {
            Some(task) => Ok(Notice::Triggered(task.0)),
            None => Err(unknown(&name)),
        }
    };
    let did = did.await;
    answer(&state, form.back(), did)
}
