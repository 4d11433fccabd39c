//! `/tasks`: a page of tasks in one state, filtered by queue and handler,
//! oldest or newest first, paged by key (the next page starts after the
//! last task shown, so a deep page costs what the first does). Dead tasks
//! get retry buttons and the bulk actions; waiting ones a cancel button.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use conveyor::durable::{ListOrder, ListParams, TaskRecord};
use conveyor::{TaskId, TaskState, Timestamp};
use serde::Deserialize;

use super::chrome::{age, error_page, field, render, Chrome};
use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;

/// Tasks on one page.
const PAGE: usize = 50;
/// The longest error shown in a row.
const ERROR_SHOWN: usize = 160;

/// The page's query: every field as a form sends it (empty when unset).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TasksQuery {
    state: Option<String>,
    queue: Option<String>,
    handler: Option<String>,
    order: Option<String>,
    after: Option<String>,
    notice: Option<String>,
}

/// The filters, read.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) state: TaskState,
    pub(crate) queue: Option<String>,
    pub(crate) handler: Option<String>,
    pub(crate) newest_first: bool,
}

impl Filter {
    /// The link to a page of these filters, after `after` when given.
    pub(crate) fn link(&self, after: Option<TaskId>) -> String {
        let mut pairs = vec![("state", self.state.as_str().to_string())];
        if let Some(q) = &self.queue {
            pairs.push(("queue", q.clone()));
        }
        if let Some(h) = &self.handler {
            pairs.push(("handler", h.clone()));
        }
        if self.newest_first {
            pairs.push(("order", "newest".into()));
        }
        if let Some(id) = after {
            pairs.push(("after", id.0.to_string()));
        }
        format!(
            "/tasks?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    }
}

/// One task's row.
pub(crate) struct Row {
    id: u64,
    queue: String,
    handler: String,
    state: &'static str,
    attempts: String,
    /// When it was enqueued, or finished, as an age.
    when: String,
    error: Option<String>,
    can_cancel: bool,
    can_retry: bool,
}

impl Row {
    fn new(r: TaskRecord, now: Timestamp) -> Row {
        let error = r.error.map(|e| match e.char_indices().nth(ERROR_SHOWN) {
            Some((cut, _)) => format!("{}…", &e[..cut]),
            None => e,
        });
        Row {
            id: r.id.0,
            when: match (r.finished_at, r.state) {
                (Some(t), _) => format!("finished {} ago", age(now, t)),
                (None, TaskState::Scheduled | TaskState::Retrying) if r.run_at > now => {
                    format!("due in {}", age(r.run_at, now))
                }
                (None, TaskState::Scheduled | TaskState::Retrying) => "due now".to_string(),
                (None, _) => format!("enqueued {} ago", age(now, r.created_at)),
            },
            attempts: format!("{}/{}", r.attempts, r.max_attempts),
            can_cancel: r.state.is_waiting(),
            can_retry: r.state == TaskState::Dead,
            state: r.state.as_str(),
            queue: r.queue,
            handler: r.handler,
            error,
        }
    }
}

/// The page.
#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    page: Chrome,
    states: Vec<&'static str>,
    /// Known queues, for the filter's choices.
    queues: Vec<String>,
    state: &'static str,
    queue: String,
    handler: String,
    newest_first: bool,
    rows: Vec<Row>,
    /// How many tasks match, or why there is no count.
    matching: Result<u64, String>,
    /// This page's own link (actions come back to it).
    here: String,
    first: Option<String>,
    next: Option<String>,
    dead: bool,
    can_act: bool,
}

/// Reads the query's filters.
pub(crate) fn filter(query: &TasksQuery) -> Result<Filter, ApiError> {
    let state = match field(query.state.clone()) {
        None => TaskState::Available,
        Some(s) => s
            .parse::<TaskState>()
            .map_err(|_| ApiError::BadRequest(format!("{s:?} is not a task state")))?,
    };
    let newest_first = match field(query.order.clone()).as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(o) => {
            return Err(ApiError::BadRequest(format!(
                "{o:?} is not an order (oldest or newest)"
            )))
        }
    };
    Ok(Filter {
        state,
        queue: field(query.queue.clone()),
        handler: field(query.handler.clone()),
        newest_first,
    })
}

/// `GET /tasks`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Query(query): Query<TasksQuery>,
) -> Response {
    match read(&state, query).await {
        Ok(page) => render(&page),
        Err(e) => error_page(&state, e),
    }
}

async fn read(state: &AppState, query: TasksQuery) -> Result<TasksPage, ApiError> {
    let filter = filter(&query)?;
    let after = match field(query.after.clone()) {
        Some(text) => Some(crate::api::tasks::parse_id(&text)?),
        None => None,
    };
    let params = ListParams::new(filter.state)
        .queue_opt(filter.queue.as_deref())
        .handler_opt(filter.handler.as_deref())
        .order(if filter.newest_first {
            ListOrder::NewestFirst
        } else {
            ListOrder::OldestFirst
        })
        .after_opt(after)
        .limit(PAGE);
    let tasks = state.backend.list(&params).await?;
    let next = params
        .next_page(&tasks)
        .and_then(|p| p.after)
        .map(|id| filter.link(Some(id)));
    // Counts by queue and state are what every store keeps cheaply; a
    // handler filter has no such count. A failed read says so rather than
    // showing a count of zero.
    let (stats, matching) = match state.backend.stats().await {
        Ok(stats) => {
            let matching = match &filter.handler {
                Some(h) => Err(format!(
                    "Tasks of handler {h} are listed a page at a time; \
                     the store keeps no count per handler."
                )),
                None => Ok(stats
                    .iter()
                    .filter(|q| filter.queue.as_deref().is_none_or(|name| name == q.queue))
                    .map(|q| q.count(filter.state))
                    .sum()),
            };
            (stats, matching)
        }
        Err(e) => (Vec::new(), Err(format!("No count: {}", e.chain()))),
    };
    let now = Timestamp::now();
    let dead = filter.state == TaskState::Dead;
    let title = format!("Tasks: {}", filter.state.as_str());
    let nav = match filter.state {
        TaskState::Dead => "dead",
        TaskState::Scheduled => "scheduled",
        _ => "tasks",
    };
    let mut page = Chrome::new(state, title, nav);
    page = page.notice(query.notice);
    let can_act = !page.read_only && state.backend.administration().is_some();
    Ok(TasksPage {
        states: TaskState::ALL.iter().map(|s| s.as_str()).collect(),
        queues: stats.into_iter().map(|q| q.queue).collect(),
        state: filter.state.as_str(),
        queue: filter.queue.clone().unwrap_or_default(),
        handler: filter.handler.clone().unwrap_or_default(),
        newest_first: filter.newest_first,
        rows: tasks.into_iter().map(|r| Row::new(r, now)).collect(),
        matching,
        here: filter.link(after),
        first: after.map(|_| filter.link(None)),
        next,
        dead,
        can_act,
        page,
    })
}
