//! `/api/v1/dead`: dead-lettered tasks run again, or deleted.

use axum::extract::State;
use axum::Json;

use conveyor_core::Search;

use super::tasks::parse_id;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::state::AppState;
use crate::views::{CountView, ErrorView, PurgeRequest, RequeueMatchingRequest, RequeueRequest};

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

/// Puts every dead task matching a filter back to run, a bounded batch at a
/// time. A dead task whose unique key an unfinished task holds stays dead.
#[utoipa::path(
    post, path = "/api/v1/dead/requeue_matching", tag = "dead letters",
    request_body = RequeueMatchingRequest,
    responses(
        (status = 200, description = "How many moved", body = CountView),
        (status = 400, description = "A body that is not the documented JSON", body = ErrorView),
        (status = 403, description = "Read-only, or a request from another site", body = ErrorView),
        (status = 501, description = "The backend cannot list or requeue", body = ErrorView),
    )
)]
pub(crate) async fn requeue_matching(
    State(state): State<AppState>,
    Body(request): Body<RequeueMatchingRequest>,
) -> ApiResult<CountView> {
    let search = request.search.as_deref().and_then(Search::new);
    let count = crate::bulk::requeue_dead_matching(
        &*state.backend,
        request.queue.as_deref(),
        request.handler.as_deref(),
        search.as_ref(),
    )
    .await?;
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
