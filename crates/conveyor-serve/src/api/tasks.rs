//! `/api/v1/tasks`: enqueue one or many, read one, wait for one, cancel one,
//! list a page.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conveyor_core::{wait_for_finish, ListOrder, ListParams, NewTask, Search, DEFAULT_QUEUE};
use conveyor_core::{TaskId, TaskState};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Path, Query};
use crate::names;
use crate::state::AppState;
use crate::views::{
    CancelView, CountQuery, EnqueueManyRequest, EnqueueRequest, EnqueuedManyView, EnqueuedView,
    ErrorView, ListQuery, MatchCountView, OrderName, TaskPage, TaskView, WaitQuery, WaitView,
    MAX_MILLIS,
};

/// Most tasks one request may enqueue.
const MAX_BATCH: usize = 10_000;
/// Longest a wait may last, and its length when the request names none:
/// a long poll returns before proxies and clients give up on a quiet
/// connection; a client that wants longer asks again.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// Most tasks (or workflows) in one page.
const MAX_PAGE: usize = 1_000;

/// A listing's `limit`: 50 when not given, else between 1 and
/// [`MAX_PAGE`].
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "limit: between 1 and {MAX_PAGE}"
        )));
    }
    Ok(limit)
}

/// A task id from its decimal form.
pub(crate) fn parse_id(text: &str) -> Result<TaskId, ApiError> {
    text.parse::<u64>()
        .map(TaskId)
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not a task id (a decimal number)")))
}

fn non_empty(what: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() => Err(ApiError::BadRequest(format!("{what} may not be empty"))),
        other => Ok(other),
    }
}

/// The task a request describes, or why it cannot be one.
fn new_task(r: EnqueueRequest) -> Result<NewTask, ApiError> {
    names::check("handler", &r.handler)?;
    let payload =
        serde_json::to_vec(&r.params).map_err(|e| ApiError::BadRequest(format!("params: {e}")))?;
    let queue = non_empty("queue", r.queue)?.unwrap_or_else(|| DEFAULT_QUEUE.to_string());
    names::check("queue", &queue)?;
    let mut task = NewTask::new(r.handler, payload).queue(queue);
    if let Some(p) = r.priority {
        task = task.priority(p);
    }
    for (what, value) in [
        ("delay_ms", r.delay_ms),
        ("timeout_ms", r.timeout_ms),
        ("keep_ms", r.keep_ms),
    ] {
        if value.is_some_and(|ms| ms > MAX_MILLIS) {
            return Err(ApiError::BadRequest(format!(
                "{what}: at most {MAX_MILLIS} (100 years)"
            )));
        }
    }
    if let Some(ms) = r.delay_ms {
        task = task.delay(Duration::from_millis(ms));
    }
    if let Some(at) = &r.run_at {
        let at = conveyor_core::Timestamp::parse_rfc3339(at)
            .map_err(|e| ApiError::BadRequest(format!("run_at: {e}")))?;
        task = task.run_at(at);
    }
    match r.max_attempts {
        Some(0) => {
            return Err(ApiError::BadRequest(
                "max_attempts must be at least 1".into(),
            ))
        }
        Some(n) => task = task.max_attempts(n),
        None => {}
    }
    match r.timeout_ms {
        Some(0) => return Err(ApiError::BadRequest("timeout_ms must be at least 1".into())),
        Some(ms) => task = task.timeout(Duration::from_millis(ms)),
        None => {}
    }
    if let Some(ms) = r.keep_ms {
        task = task.keep(Duration::from_millis(ms));
    }
    if let Some(k) = non_empty("unique_key", r.unique_key)? {
        task = task.unique_key(k);
    }
    if let Some(k) = non_empty("ordering_key", r.ordering_key)? {
        task = task.ordering_key(k);
    }
    Ok(task)
}

/// Enqueues one task.
#[utoipa::path(
    post, path = "/api/v1/tasks", tag = "tasks",
    request_body = EnqueueRequest,
    responses(
        (status = 201, description = "Enqueued", body = EnqueuedView),
        (status = 400, description = "A bad field", body = ErrorView),
        (status = 413, description = "The body is over the server's limit", body = ErrorView),
        (status = 501, description = "The backend lacks a feature the task asks for", body = ErrorView),
    )
)]
pub(crate) async fn enqueue(
    State(state): State<AppState>,
    Body(request): Body<EnqueueRequest>,
) -> Result<(StatusCode, Json<EnqueuedView>), ApiError> {
    let task = new_task(request)?;
    let e = state.backend.enqueue(task).await?;
    Ok((
        StatusCode::CREATED,
        Json(EnqueuedView {
            id: e.id.0.to_string(),
            duplicate: e.duplicate,
        }),
    ))
}

/// Enqueues several tasks in one step: all or none, on the backends whose
/// batches are atomic (see the capability matrix).
#[utoipa::path(
    post, path = "/api/v1/tasks/batch", tag = "tasks",
    request_body = EnqueueManyRequest,
    responses(
        (status = 201, description = "Enqueued, in request order", body = EnqueuedManyView),
        (status = 400, description = "A bad field", body = ErrorView),
        (status = 413, description = "The body is over the server's limit", body = ErrorView),
        (status = 501, description = "The backend lacks a feature a task asks for", body = ErrorView),
    )
)]
pub(crate) async fn enqueue_many(
    State(state): State<AppState>,
    Body(request): Body<EnqueueManyRequest>,
) -> Result<(StatusCode, Json<EnqueuedManyView>), ApiError> {
    if request.tasks.is_empty() || request.tasks.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "tasks: between 1 and {MAX_BATCH}, not {}",
            request.tasks.len()
        )));
    }
    let tasks = request
        .tasks
        .into_iter()
        .map(new_task)
        .collect::<Result<Vec<_>, _>>()?;
    let done = state.backend.enqueue_many(tasks).await?;
    let tasks = done
        .into_iter()
        .map(|e| EnqueuedView {
            id: e.id.0.to_string(),
            duplicate: e.duplicate,
        })
        .collect();
    Ok((StatusCode::CREATED, Json(EnqueuedManyView { tasks })))
}

/// Reads one task.
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task id", pattern = "^[0-9]{1,19}$")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 400, description = "Not a task id", body = ErrorView),
        (status = 404, description = "No such task", body = ErrorView),
        (status = 501, description = "The backend keeps no task records", body = ErrorView),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<TaskView> {
    let id = parse_id(&id)?;
    match state.backend.get(id).await? {
        Some(record) => Ok(Json(record.into())),
        None => Err(ApiError::NotFound(format!("no task {}", id.0))),
    }
}

/// Waits until a task finishes (completed, dead or cancelled) or the
/// timeout passes, then answers with the task either way (a long poll).
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}/wait", tag = "tasks",
    params(
        ("id" = String, Path, description = "The task id", pattern = "^[0-9]{1,19}$"),
        WaitQuery,
    ),
    responses(
        (status = 200, description = "The task, finished or not", body = WaitView),
        (status = 400, description = "Not a task id, or a bad timeout", body = ErrorView),
        (status = 404, description = "No such task", body = ErrorView),
        (status = 501, description = "The backend keeps no task records", body = ErrorView),
    )
)]
pub(crate) async fn wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> ApiResult<WaitView> {
    let id = parse_id(&id)?;
    let timeout = query
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(MAX_WAIT);
    if timeout > MAX_WAIT {
        return Err(ApiError::BadRequest(format!(
            "timeout_ms: at most {}",
            MAX_WAIT.as_millis()
        )));
    }
    // Woken by the finish where the store can notify. A stopping server
    // answers at once with the task as it is.
    let store = state.backend.result_store()?;
    let record = tokio::select! {
        record = wait_for_finish(store, id, timeout) => record?,
        () = state.stopping.cancelled() => store.get(id).await?,
    };
    let Some(record) = record else {
        return Err(ApiError::NotFound(format!("no task {}", id.0)));
    };
    Ok(Json(WaitView {
        finished: record.state.is_finished(),
        task: record.into(),
    }))
}

/// Cancels a waiting or running task (a running one's worker stops it at its
/// next lease renewal; nothing it reports afterwards is kept).
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "The task id", pattern = "^[0-9]{1,19}$")),
    responses(
        (status = 200, description = "The task's state now: cancelled, or the state that made cancelling impossible", body = CancelView),
        (status = 400, description = "Not a task id", body = ErrorView),
        (status = 403, description = "Read-only, or a request from another site", body = ErrorView),
        (status = 404, description = "No such task", body = ErrorView),
        (status = 501, description = "The backend cannot cancel", body = ErrorView),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<CancelView> {
    let id = parse_id(&id)?;
    let state = state.backend.cancel(id).await?;
    Ok(Json(CancelView {
        state: state.into(),
    }))
}

/// Lists tasks in one state, a page at a time (paging by key: a page costs
/// the same wherever it starts).
#[utoipa::path(
    get, path = "/api/v1/tasks", tag = "tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = TaskPage),
        (status = 400, description = "A bad filter", body = ErrorView),
        (status = 501, description = "The backend cannot list", body = ErrorView),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<TaskPage> {
    let limit = page_limit(query.limit)?;
    let after = query.after.as_deref().map(parse_id).transpose()?;
    let order = match query.order.unwrap_or(OrderName::Oldest) {
        OrderName::Oldest => ListOrder::OldestFirst,
        OrderName::Newest => ListOrder::NewestFirst,
    };
    let params = ListParams::new(query.state.map(Into::into).unwrap_or(TaskState::Available))
        .queue_opt(query.queue.as_deref())
        .handler_opt(query.handler.as_deref())
        .order(order)
        .after_opt(after)
        .limit(limit);
    let search = query.search.as_deref().and_then(Search::new);
    let page = state.backend.page(&params, search.as_ref()).await?;
    Ok(Json(TaskPage {
        next_after: page.next.map(|id| id.0.to_string()),
        scanned: page.scanned,
        tasks: page.tasks.into_iter().map(Into::into).collect(),
    }))
}

/// Counts the tasks a filter matches: exact for a state and queue, and for a
/// handler or a search up to 100,000 candidates (a lower bound past that).
#[utoipa::path(
    get, path = "/api/v1/tasks/count", tag = "tasks",
    params(CountQuery),
    responses(
        (status = 200, description = "The count", body = MatchCountView),
        (status = 400, description = "A bad filter", body = ErrorView),
        (status = 501, description = "The backend cannot count", body = ErrorView),
    )
)]
pub(crate) async fn count(
    State(state): State<AppState>,
    Query(query): Query<CountQuery>,
) -> ApiResult<MatchCountView> {
    let params = ListParams::new(query.state.map(Into::into).unwrap_or(TaskState::Available))
        .queue_opt(query.queue.as_deref())
        .handler_opt(query.handler.as_deref());
    let search = query.search.as_deref().and_then(Search::new);
    let count = state.backend.count(&params, search.as_ref()).await?;
    Ok(Json(MatchCountView {
        count: count.n,
        exact: count.exact,
    }))
}
