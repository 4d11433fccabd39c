//! `/api/v1/workflows`: submit a workflow declared as JSON, list them, read
//! one with every node, cancel one, retry its failed part.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conveyor_core::workflow::{
    declared, Retried, WorkflowFilter, WorkflowId, WorkflowRecord, WorkflowState, WorkflowSummary,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Path, Query};
use crate::state::AppState;
use crate::views::ErrorView;

/// A submitted workflow.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubmittedView {
    /// Its id.
    pub id: String,
    /// The nodes that started at once, with their tasks.
    pub started: Vec<StartedNode>,
}

/// A node enqueued when its workflow was submitted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StartedNode {
    /// The node's name.
    pub node: String,
    /// Its task's id.
    pub task: String,
}

/// A workflow with every node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowView {
    /// Its id.
    pub id: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// When it was submitted (milliseconds since the Unix epoch).
    pub created_at_ms: i64,
    /// When its last node settled or it was cancelled.
    pub ended_at_ms: Option<i64>,
    /// Every node: the body's, then the callbacks', as declared.
    pub nodes: Vec<NodeView>,
}

/// One node of a workflow.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// `waiting`, `running`, `succeeded`, `failed`, `cancelled` or
    /// `skipped`.
    pub state: String,
    /// Its task's id, once enqueued (`/api/v1/tasks/{id}` has its result).
    pub task: Option<String>,
    /// The nodes it waits for.
    pub after: Vec<String>,
    /// For a callback: `on_success`, `on_failure` or `on_complete`.
    pub callback: Option<String>,
    /// When its task added nodes to the workflow: what it passes on.
    pub expanded: Option<ExpandedView>,
}

/// What an expanded node passes on to its dependents.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExpandedView {
    /// `one` (its one last added node's result) or `list` (the list of
    /// its last added nodes' results).
    pub output: String,
    /// The names of the added nodes it takes that from.
    pub last: Vec<String>,
}

/// Where a workflow stands.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStateName {
    /// Some node has not settled.
    Running,
    /// Every node settled and the body succeeded.
    Succeeded,
    /// Every node settled and the body failed.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl From<WorkflowStateName> for WorkflowState {
    fn from(s: WorkflowStateName) -> WorkflowState {
        match s {
            WorkflowStateName::Running => WorkflowState::Running,
            WorkflowStateName::Succeeded => WorkflowState::Succeeded,
            WorkflowStateName::Failed => WorkflowState::Failed,
            WorkflowStateName::Cancelled => WorkflowState::Cancelled,
        }
    }
}

/// Which workflows to list.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WorkflowListQuery {
    /// Only workflows in this state.
    pub state: Option<WorkflowStateName>,
    /// Only workflows older than this one (the `next_before` of the page
    /// before).
    #[param(pattern = "^[0-9]{1,19}$")]
    pub before: Option<String>,
    /// At most this many (default 50, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A workflow in a listing, without its nodes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowSummaryView {
    /// Its id.
    pub id: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// How many nodes it has, callbacks included.
    pub nodes: u32,
    /// How many of them have not settled.
    pub left: u32,
    /// When it was submitted (milliseconds since the Unix epoch).
    pub created_at_ms: i64,
    /// When its last node settled or it was cancelled.
    pub ended_at_ms: Option<i64>,
}

impl From<WorkflowSummary> for WorkflowSummaryView {
    fn from(s: WorkflowSummary) -> Self {
        WorkflowSummaryView {
            id: s.id.to_string(),
            state: s.state.as_str().to_string(),
            nodes: s.nodes,
            left: s.left,
            created_at_ms: s.created_at.as_millis(),
            ended_at_ms: s.ended_at.map(|t| t.as_millis()),
        }
    }
}

/// A page of workflows, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowPage {
    /// The workflows.
    pub workflows: Vec<WorkflowSummaryView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<String>,
}

/// How many nodes a cancel stopped.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CancelledView {
    /// Nodes cancelled (0 for a workflow that had ended).
    pub cancelled: u64,
}

/// How many nodes a retry put back to run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetriedView {
    /// Nodes put back (0 when nothing had failed).
    pub retried: u64,
}

/// A workflow id from its decimal form (the API's and the dashboard's).
pub(crate) fn parse_id(text: &str) -> Result<WorkflowId, ApiError> {
    text.parse::<u64>().map(WorkflowId).map_err(|_| {
        ApiError::BadRequest(format!("{text:?} is not a workflow id (a decimal number)"))
    })
}

fn view(w: WorkflowRecord) -> WorkflowView {
    WorkflowView {
        id: w.id.to_string(),
        state: w.state.as_str().to_string(),
        created_at_ms: w.created_at.as_millis(),
        ended_at_ms: w.ended_at.map(|t| t.as_millis()),
        nodes: w
            .nodes
            .into_iter()
            .map(|n| NodeView {
                name: n.name,
                state: n.state.as_str().to_string(),
                task: n.task.map(|t| t.to_string()),
                after: n.after,
                callback: n.callback.map(|c| c.key().to_string()),
                expanded: n.expanded.map(|(output, last)| ExpandedView {
                    output: output.as_str().to_string(),
                    last,
                }),
            })
            .collect(),
    }
}

/// Submits a workflow: its graph and first tasks are stored at once. The
/// body is the declaration `conveyor workflow submit` reads: one of
/// `chain`, `group`, `chord` (`header`, `body`) or `nodes` (`name`,
/// `after`, `input`), tasks as `{handler, params, queue, priority,
/// attempts, timeout, delay, keep, ordering_key}`, callbacks `on_success`,
/// `on_failure`, `on_complete`.
#[utoipa::path(
    post, path = "/api/v1/workflows", tag = "workflows",
    request_body(content = Object, description = "The declaration (see docs/workflows.md)"),
    responses(
        (status = 201, description = "Stored, its first tasks enqueued", body = SubmittedView),
        (status = 400, description = "A declaration that cannot run (the node and what is wrong)", body = ErrorView),
        (status = 501, description = "The backend has no workflows", body = ErrorView),
    )
)]
pub(crate) async fn submit(
    State(state): State<AppState>,
    Body(declaration): Body<Value>,
) -> Result<(StatusCode, Json<SubmittedView>), ApiError> {
    let text = serde_json::to_vec(&declaration)
        .map_err(|e| ApiError::BadRequest(format!("declaration: {e}")))?;
    let spec = declared::from_json(&text)?;
    let submitted = state.backend.submit_workflow(spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(SubmittedView {
            id: submitted.id.to_string(),
            started: submitted
                .started
                .into_iter()
                .map(|(node, task)| StartedNode {
                    node,
                    task: task.to_string(),
                })
                .collect(),
        }),
    ))
}

/// Lists workflows, newest first, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/workflows", tag = "workflows",
    params(WorkflowListQuery),
    responses(
        (status = 200, description = "A page", body = WorkflowPage),
        (status = 400, description = "A bad filter", body = ErrorView),
        (status = 501, description = "The backend has no workflows", body = ErrorView),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<WorkflowListQuery>,
) -> ApiResult<WorkflowPage> {
    let limit = super::tasks::page_limit(query.limit)?;
    let before = query.before.as_deref().map(parse_id).transpose()?;
    let filter = WorkflowFilter {
        state: query.state.map(Into::into),
        limit,
        before,
    };
    let page = state.backend.list_workflows(&filter).await?;
    let next_before = (page.len() == limit)
        .then(|| page.last().map(|s| s.id.to_string()))
        .flatten();
    Ok(Json(WorkflowPage {
        workflows: page.into_iter().map(Into::into).collect(),
        next_before,
    }))
}

/// A workflow with every node's state and task.
#[utoipa::path(
    get, path = "/api/v1/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "The workflow's id", pattern = "^[0-9]{1,19}$")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowView),
        (status = 400, description = "Not a workflow id", body = ErrorView),
        (status = 404, description = "No workflow has this id (or it was pruned)", body = ErrorView),
        (status = 501, description = "The backend has no workflows", body = ErrorView),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<WorkflowView> {
    let id = parse_id(&id)?;
    match state.backend.workflow(id).await? {
        Some(w) => Ok(Json(view(w))),
        None => Err(ApiError::NotFound(format!("no workflow {id}"))),
    }
}

/// Cancels every node that has not settled; running nodes' tasks are
/// cancelled and no callback runs.
#[utoipa::path(
    post, path = "/api/v1/workflows/{id}/cancel", tag = "workflows",
    params(("id" = String, Path, description = "The workflow's id", pattern = "^[0-9]{1,19}$")),
    responses(
        (status = 200, description = "How many nodes it cancelled", body = CancelledView),
        (status = 400, description = "Not a workflow id", body = ErrorView),
        (status = 404, description = "No workflow has this id", body = ErrorView),
        (status = 501, description = "The backend has no workflows", body = ErrorView),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<CancelledView> {
    let id = parse_id(&id)?;
    match state.backend.cancel_workflow(id).await? {
        Some(cancelled) => Ok(Json(CancelledView { cancelled })),
        None => Err(ApiError::NotFound(format!("no workflow {id}"))),
    }
}

/// Puts the failed part of an ended workflow back to run: its failed,
/// cancelled and skipped nodes run again (those that succeeded keep their
/// results), and the callbacks follow the new end.
#[utoipa::path(
    post, path = "/api/v1/workflows/{id}/retry", tag = "workflows",
    params(("id" = String, Path, description = "The workflow's id", pattern = "^[0-9]{1,19}$")),
    responses(
        (status = 200, description = "How many nodes it put back", body = RetriedView),
        (status = 400, description = "Not a workflow id", body = ErrorView),
        (status = 404, description = "No workflow has this id", body = ErrorView),
        (status = 409, description = "The workflow is still running", body = ErrorView),
        (status = 501, description = "The backend has no workflows", body = ErrorView),
    )
)]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<RetriedView> {
    let id = parse_id(&id)?;
    match state.backend.retry_workflow(id).await? {
        Some(Retried::Nodes(retried)) => Ok(Json(RetriedView { retried })),
        Some(Retried::Running) => Err(ApiError::Conflict(Retried::running_refusal(id))),
        None => Err(ApiError::NotFound(format!("no workflow {id}"))),
    }
}
