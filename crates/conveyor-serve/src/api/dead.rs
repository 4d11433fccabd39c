//! `/api/v1/dead`: dead-lettered tasks run again, or deleted.

use axum::extract::State;
use axum::Json;

use super::tasks::parse_id;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::state::AppState;
use crate::views::{CountView, ErrorView, PurgeRequest, RequeueRequest};

/// Most ids one request may requeue.
const MAX_IDS: usize = 10_000;

/// Puts dead tasks back to run, attempts reset; ids that are not dead are
/// left alone.
#[utoipa::path(
    post, path = "/api/v1/dead/requeue", tag = "dead letters",
    request_body = RequeueRequest,
    responses(
        (status = 200, description = "How many moved", body = CountView),
        (status = 400, description = "A bad id", body = ErrorView),
        (status = 403, description = "Read-only, or a request from another site", body = ErrorView),
        (status = 501, description = "The backend cannot requeue", body = ErrorView),
    )
)]
pub(crate) async fn requeue(
    State(state): State<AppState>,
    Body(request): Body<RequeueRequest>,
) -> ApiResult<CountView> {
    if request.ids.len() > MAX_IDS {
        return Err(ApiError::BadRequest(format!("ids: at most {MAX_IDS}")));
    }
    let ids = request
        .ids
        .iter()
        .map(|id| parse_id(&id.0))
        .collect::<Result<Vec<_>, _>>()?;
    let count = state.backend.requeue_dead(&ids).await?;
    Ok(Json(CountView { count }))
}

/// Deletes dead tasks, of one queue or of all.
#[utoipa::path(
    post, path = "/api/v1/dead/purge", tag = "dead letters",
    request_body = PurgeRequest,
    responses(
        (status = 200, description = "How many were deleted", body = CountView),
        (status = 400, description = "A body that is not the documented JSON", body = ErrorView),
        (status = 403, description = "Read-only, or a request from another site", body = ErrorView),
        (status = 501, description = "The backend cannot purge", body = ErrorView),
    )
)]
pub(crate) async fn purge(
    State(state): State<AppState>,
    Body(request): Body<PurgeRequest>,
) -> ApiResult<CountView> {
    let count = state.backend.purge_dead(request.queue.as_deref()).await?;
    Ok(Json(CountView { count }))
}
