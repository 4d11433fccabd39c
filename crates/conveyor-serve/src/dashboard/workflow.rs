//! `/workflows`: the newest workflows (by state, a page at a time), and a
//! form that opens one by id; `/workflows/{id}`: one workflow —
//! its graph drawn on the server (SVG, each node coloured by its state and
//! linked to its task), and every node's state and task in a table.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use conveyor_core::workflow::{Retried, WorkflowFilter, WorkflowId, WorkflowState};
use serde::Deserialize;

use super::chrome::{error_page, render, when, Chrome};
use super::graph_layout::{layout, Layout};
use crate::api::workflows::parse_id;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::state::AppState;

/// One row of the nodes table.
struct NodeRow {
    name: String,
    state: &'static str,
    task: Option<u64>,
    after: String,
}

/// The page of one workflow.
#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    page: Chrome,
    id: u64,
    state: &'static str,
    created: String,
    ended: Option<String>,
    graph: Layout,
    rows: Vec<NodeRow>,
    can_cancel: bool,
    can_retry: bool,
}

/// Workflows listed per page.
const PAGE: usize = 50;

/// One row of the workflows list.
struct ListRow {
    id: u64,
    state: &'static str,
    nodes: u32,
    left: u32,
    created: String,
    ended: Option<String>,
}

/// The newest workflows, and the form that opens one by id.
#[derive(Template)]
#[template(path = "workflows.html")]
struct OpenPage {
    page: Chrome,
    supported: bool,
    /// The state filtered by (`""`: any).
    state: &'static str,
    rows: Vec<ListRow>,
    /// The `before` of the next page, when there may be one.
    older: Option<u64>,
}

/// `?id=` of the open form; `?state=` and `?before=` of the list.
#[derive(Deserialize)]
pub(crate) struct OpenQuery {
    id: Option<String>,
    state: Option<String>,
    before: Option<String>,
}

/// `GET /workflows`: the list and the form, or a redirect to the workflow
/// the form names.
pub(crate) async fn open(State(state): State<AppState>, Query(q): Query<OpenQuery>) -> Response {
    if let Some(id) = q.id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        return match parse_id(id) {
            Ok(n) => Redirect::to(&format!("/workflows/{n}")).into_response(),
            Err(e) => error_page(&state, e),
        };
    }
    let filter = q.state.as_deref().filter(|s| !s.is_empty());
    let wanted = match filter.map(|s| WorkflowState::parse(s).ok_or(s)) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(s)) => {
            let e = ApiError::BadRequest(format!(
                "{s:?} is not a workflow state (running, succeeded, failed, cancelled)"
            ));
            return error_page(&state, e);
        }
    };
    let before = match q.before.as_deref().filter(|s| !s.is_empty()).map(parse_id) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return error_page(&state, e),
    };
    let supported = state.backend.workflows().is_ok();
    let mut rows = Vec::new();
    if supported {
        let listed = state
            .backend
            .list_workflows(&WorkflowFilter {
                state: wanted,
                limit: PAGE,
                before,
            })
            .await;
        match listed {
            Ok(page) => {
                rows = page
                    .into_iter()
                    .map(|s| ListRow {
                        id: s.id.0,
                        state: s.state.as_str(),
                        nodes: s.nodes,
                        left: s.left,
                        created: when(s.created_at),
                        ended: s.ended_at.map(when),
                    })
                    .collect();
            }
            Err(e) => return error_page(&state, e),
        }
    }
    let older = (rows.len() == PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    render(&OpenPage {
        page: Chrome::new(&state, "Workflows", "workflows"),
        supported,
        state: wanted.map_or("", WorkflowState::as_str),
        rows,
        older,
    })
}

/// `GET /workflows/{id}`.
pub(crate) async fn page(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let read = async {
        let id = parse_id(&id)?;
        state
            .backend
            .workflow(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no workflow {id} (or it was pruned)")))
    };
    let w = match read.await {
        Ok(w) => w,
        Err(e) => return error_page(&state, e),
    };
    let page = Chrome::new(&state, format!("Workflow {}", w.id), "workflows");
    let can_cancel = !page.read_only && w.state == WorkflowState::Running;
    let can_retry =
        !page.read_only && matches!(w.state, WorkflowState::Failed | WorkflowState::Cancelled);
    render(&WorkflowPage {
        id: w.id.0,
        state: w.state.as_str(),
        created: when(w.created_at),
        ended: w.ended_at.map(when),
        graph: layout(&w),
        rows: w
            .nodes
            .iter()
            .map(|n| NodeRow {
                name: n.name.clone(),
                state: n.state.as_str(),
                task: n.task.map(|t| t.0),
                after: match (n.callback, &n.expanded) {
                    (Some(c), _) => format!("({})", c.key()),
                    (None, Some((_, last))) => {
                        let waits = n.after.join(", ");
                        let sep = if waits.is_empty() { "" } else { "; " };
                        let named: Vec<&str> = last.iter().take(3).map(String::as_str).collect();
                        let more = match last.len().saturating_sub(3) {
                            0 => String::new(),
                            n => format!(" and {n} more"),
                        };
                        format!(
                            "{waits}{sep}expanded, settles with {}{more}",
                            named.join(", ")
                        )
                    }
                    (None, None) => n.after.join(", "),
                },
            })
            .collect(),
        can_cancel,
        can_retry,
        page,
    })
}

/// `POST /actions/workflows/{id}/cancel`: back to the workflow's page,
/// which shows it cancelled.
pub(crate) async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let backend = state.backend.clone();
    act_on(&state, &id, |id| async move {
        Ok(backend.cancel_workflow(id).await?.map(|_| ()))
    })
    .await
}

/// `POST /actions/workflows/{id}/retry`: back to the workflow's page, which
/// shows it running again (an error page while it still runs).
pub(crate) async fn retry(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let backend = state.backend.clone();
    act_on(&state, &id, |id| async move {
        match backend.retry_workflow(id).await? {
            Some(Retried::Running) => Err(ApiError::Conflict(Retried::running_refusal(id))),
            done => Ok(done.map(|_| ())),
        }
    })
    .await
}

/// Runs `act` on the workflow the path's `id` names (`None`: there is no
/// such workflow), then goes back to its page, or shows the error.
async fn act_on<F, Fut>(state: &AppState, id: &str, act: F) -> Response
where
    F: FnOnce(WorkflowId) -> Fut,
    Fut: std::future::Future<Output = Result<Option<()>, ApiError>>,
{
    let done = async {
        let id = parse_id(id)?;
        act(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no workflow {id}")))?;
        Ok::<_, ApiError>(id)
    };
    match done.await {
        Ok(id) => Redirect::to(&format!("/workflows/{id}")).into_response(),
        Err(e) => error_page(state, e),
    }
}
