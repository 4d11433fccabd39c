//! `/api/v1/stats` and `/api/v1/workers`: what the queues hold and who works
//! on them.

use axum::extract::State;
use axum::Json;
use conveyor_core::Timestamp;
use conveyor_core::FORGET_WORKERS_AFTER;

use crate::error::ApiResult;
use crate::state::AppState;
use crate::views::{ErrorView, StatsView, WorkerView, WorkersView};

/// Counts per queue and state, the oldest ready task's age, and the tasks
/// waiting for a handler no live worker has.
#[utoipa::path(
    get, path = "/api/v1/stats", tag = "queues",
    responses(
        (status = 200, description = "Every queue's counts", body = StatsView),
        (status = 501, description = "The backend cannot count", body = ErrorView),
    )
)]
pub(crate) async fn stats(State(state): State<AppState>) -> ApiResult<StatsView> {
    let queues = state.backend.stats().await?;
    let names: Vec<String> = queues.iter().map(|q| q.queue.clone()).collect();
    let unserved = conveyor_core::unserved(&*state.backend, &names, Timestamp::now()).await?;
    Ok(Json(StatsView {
        queues: queues.into_iter().map(Into::into).collect(),
        unserved: unserved.into_iter().map(Into::into).collect(),
    }))
}

/// Workers heard from lately (alive, stopped or silent), newest heartbeat
/// first.
#[utoipa::path(
    get, path = "/api/v1/workers", tag = "workers",
    responses(
        (status = 200, description = "The workers", body = WorkersView),
        (status = 501, description = "The backend keeps no worker registry", body = ErrorView),
    )
)]
pub(crate) async fn workers(State(state): State<AppState>) -> ApiResult<WorkersView> {
    let now = Timestamp::now();
    let since = now.minus(FORGET_WORKERS_AFTER);
    let workers = state.backend.registry()?.workers(since).await?;
    Ok(Json(WorkersView {
        workers: workers
            .into_iter()
            .map(|w| WorkerView::new(w, now))
            .collect(),
    }))
}
