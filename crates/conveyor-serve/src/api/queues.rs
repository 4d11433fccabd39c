//! `/api/v1/queues`: every queue with its counts and whether it is paused;
//! pausing and resuming one (where the backend has the queue control part).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;

use crate::error::ApiResult;
// The API's own extractor: a path it cannot read is a 400 with the
// documented `{"error": …}` body, not axum's plain text.
use crate::extract::Path;
use crate::state::AppState;
use crate::views::{ErrorView, QueueControlView, QueueStateView, QueuesView};

/// Every queue the backend counts, with its counts and `paused` flag, and
/// the paused queues that hold no task yet; sorted by name. A backend
/// without the queue control part lists every queue as not paused, and
/// says so in `pausing`.
#[utoipa::path(
    get, path = "/api/v1/queues", tag = "queues",
    responses(
        (status = 200, description = "Every queue", body = QueuesView),
        (status = 501, description = "The backend cannot count", body = ErrorView),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<QueuesView> {
    let stats = state.backend.stats().await?;
    let (paused, pausing) = match state.backend.queue_control() {
        Ok(control) => (control.paused().await?, true),
        Err(_) => (Vec::new(), false),
    };
    let mut queues: BTreeMap<String, QueueStateView> = stats
        .into_iter()
        .map(|q| (q.queue.clone(), QueueStateView::new(q.into(), false)))
        .collect();
    for name in paused {
        queues
            .entry(name.clone())
            .or_insert_with(|| QueueStateView::empty(name))
            .paused = true;
    }
    Ok(Json(QueuesView {
        queues: queues.into_values().collect(),
        pausing,
    }))
}

/// Pauses a queue: no reservation that begins afterwards, by any worker on
/// the backend, takes its tasks; enqueueing goes on, and tasks already
/// running finish. `changed` is false when it was paused already.
#[utoipa::path(
    post, path = "/api/v1/queues/{queue}/pause", tag = "queues",
    params(("queue" = String, Path, description = "The queue's name", max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")),
    responses(
        (status = 200, description = "The queue is paused", body = QueueControlView),
        (status = 400, description = "Not a queue name", body = ErrorView),
        (status = 403, description = "Read-only, or a request from another site", body = ErrorView),
        (status = 501, description = "The backend cannot pause queues", body = ErrorView),
    )
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(queue): Path<String>,
) -> ApiResult<QueueControlView> {
    crate::names::check("queue", &queue)?;
    let changed = state.backend.pause_queue(&queue).await?;
    Ok(Json(QueueControlView {
        queue,
        paused: true,
        changed,
    }))
}

/// Resumes a paused queue: its tasks are reservable at once. `changed` is
/// false when it was not paused.
#[utoipa::path(
    post, path = "/api/v1/queues/{queue}/resume", tag = "queues",
    params(("queue" = String, Path, description = "The queue's name", max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")),
    responses(
        (status = 200, description = "The queue runs", body = QueueControlView),
        (status = 400, description = "Not a queue name", body = ErrorView),
        (status = 403, description = "Read-only, or a request from another site", body = ErrorView),
        (status = 501, description = "The backend cannot pause queues", body = ErrorView),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(queue): Path<String>,
) -> ApiResult<QueueControlView> {
    crate::names::check("queue", &queue)?;
    let changed = state.backend.resume_queue(&queue).await?;
    Ok(Json(QueueControlView {
        queue,
        paused: false,
        changed,
    }))
}
