//! `/api/v1/schedules`: the backend's periodic schedules — list them with
//! each one's next and last fire and that fire's outcome, read one, add or
//! replace one from its JSON declaration, remove, pause, resume, and fire
//! one now.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conveyor_core::schedule::{Schedule, ScheduleRecord};
use conveyor_core::{Backend, Error, TaskState};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Path};
use crate::state::AppState;
use crate::views::ErrorView;

/// A schedule and where its firing stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    /// Its name.
    pub name: String,
    /// Its timing in words (`cron "30 2 * * *" in Europe/Paris`, `every 30s`).
    pub timing: String,
    /// Its declaration, as stored (the fields given, normalised).
    #[schema(value_type = Object)]
    pub declared: Value,
    /// Paused: it fires only once resumed.
    pub paused: bool,
    /// Its next fire (milliseconds since the Unix epoch); absent when its
    /// timing has no more.
    pub next_fire_ms: Option<i64>,
    /// Its last fire, once it fired.
    pub last_fire_ms: Option<i64>,
    /// The task of its last fire (or trigger).
    pub last_task: Option<String>,
    /// That task's state (`available`, `running`, `completed`, `dead`, …),
    /// while its record is kept.
    pub last_state: Option<String>,
    /// Fire times passed over (missed, or skipped by its overlap policy).
    pub missed: u64,
}

/// Every schedule, by name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleList {
    /// The schedules.
    pub schedules: Vec<ScheduleView>,
}

/// The task a trigger enqueued.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggeredView {
    /// Its id (`/api/v1/tasks/{id}` has its result).
    pub task: String,
}

/// `r` with its last task's state, read from the backend's results.
pub(crate) async fn view(backend: &dyn Backend, r: ScheduleRecord) -> ScheduleView {
    let last_state = match (r.last_task, backend.result_store()) {
        (Some(id), Ok(results)) => results
            .get(id)
            .await
            .ok()
            .flatten()
            .map(|t| state_name(t.state)),
        _ => None,
    };
    ScheduleView {
        name: r.schedule.name.clone(),
        timing: r.schedule.timing.describe(),
        declared: r.schedule.to_value(),
        paused: r.paused,
        next_fire_ms: r.next_fire.map(|t| t.as_millis()),
        last_fire_ms: r.last_fire.map(|t| t.as_millis()),
        last_task: r.last_task.map(|t| t.to_string()),
        last_state,
        missed: r.missed,
    }
}

fn state_name(s: TaskState) -> String {
    s.as_str().to_string()
}

/// Every schedule with its last task's state, by name.
pub(crate) async fn all(backend: &dyn Backend) -> Result<Vec<ScheduleView>, Error> {
    let records = backend.schedules()?.schedules().await?;
    Ok(futures_util::future::join_all(records.into_iter().map(|r| view(backend, r))).await)
}

/// The answer for a name no schedule has.
pub(crate) fn unknown(name: &str) -> ApiError {
    ApiError::NotFound(format!("no schedule named {name:?}"))
}

/// Lists every schedule, by name, with its next fire, last fire and that
/// fire's outcome.
#[utoipa::path(
    get, path = "/api/v1/schedules", tag = "schedules",
    responses(
        (status = 200, description = "Every schedule", body = ScheduleList),
        (status = 501, description = "The backend has no schedules", body = ErrorView),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<ScheduleList> {
    Ok(Json(ScheduleList {
        schedules: all(state.backend.as_ref()).await?,
    }))
}

/// One schedule.
#[utoipa::path(
    get, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 404, description = "No schedule has this name", body = ErrorView),
        (status = 501, description = "The backend has no schedules", body = ErrorView),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<ScheduleView> {
    let part = state.backend.schedules()?;
    match part.schedule(&name).await? {
        Some(r) => Ok(Json(view(state.backend.as_ref(), r).await)),
        None => Err(unknown(&name)),
    }
}

/// Adds schedule `name`, or replaces its declaration: its next fire is
/// kept unless its timing changed, as are its last fire and whether it is
/// paused. The body is what a `[schedules.NAME]` table holds, as JSON
/// (`cron` or `every`, `handler`, `params`, `queue`, `timezone`,
/// `misfire`, `overlap`, `grace`, task options).
#[utoipa::path(
    put, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body(content = Object, description = "The declaration (see docs/schedules.md)"),
    responses(
        (status = 200, description = "Stored", body = ScheduleView),
        (status = 400, description = "A declaration that cannot fire (what is wrong)", body = ErrorView),
        (status = 501, description = "The backend has no schedules", body = ErrorView),
    )
)]
pub(crate) async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(declaration): Body<Value>,
) -> ApiResult<ScheduleView> {
    let part = state.backend.schedules()?;
    let schedule = Schedule::declared(&name, declaration)?;
    let record = part.put_schedule(&schedule).await?;
    Ok(Json(view(state.backend.as_ref(), record).await))
}

/// Removes a schedule; a fire already enqueued stays.
#[utoipa::path(
    delete, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No schedule has this name", body = ErrorView),
        (status = 501, description = "The backend has no schedules", body = ErrorView),
    )
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let part = state.backend.schedules()?;
    if part.remove_schedule(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown(&name))
    }
}

/// Pauses or resumes schedule `name`.
async fn set_paused(state: &AppState, name: &str, paused: bool) -> ApiResult<ScheduleView> {
    let part = state.backend.schedules()?;
    match part.pause_schedule(name, paused).await? {
        Some(r) => Ok(Json(view(state.backend.as_ref(), r).await)),
        None => Err(unknown(name)),
    }
}

/// Pauses a schedule: it fires nothing until resumed.
#[utoipa::path(
    post, path = "/api/v1/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "Paused", body = ScheduleView),
        (status = 404, description = "No schedule has this name", body = ErrorView),
        (status = 501, description = "The backend has no schedules", body = ErrorView),
    )
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<ScheduleView> {
    set_paused(&state, &name, true).await
}

/// Resumes a schedule: it goes on from its next fire time after now (what
/// it would have fired meanwhile is not made up).
#[utoipa::path(
    post, path = "/api/v1/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "Resumed", body = ScheduleView),
        (status = 404, description = "No schedule has this name", body = ErrorView),
        (status = 501, description = "The backend has no schedules", body = ErrorView),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<ScheduleView> {
    set_paused(&state, &name, false).await
}

/// Fires a schedule now, outside its timing; its next fire is unchanged.
#[utoipa::path(
    post, path = "/api/v1/schedules/{name}/trigger", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 201, description = "Enqueued", body = TriggeredView),
        (status = 404, description = "No schedule has this name", body = ErrorView),
        (status = 501, description = "The backend has no schedules", body = ErrorView),
    )
)]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<TriggeredView>), ApiError> {
    let part = state.backend.schedules()?;
    match part.trigger_schedule(&name).await? {
        Some(task) => Ok((
            StatusCode::CREATED,
            Json(TriggeredView {
                task: task.to_string(),
            }),
        )),
        None => Err(unknown(&name)),
    }
}
