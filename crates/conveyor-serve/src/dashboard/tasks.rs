//! `/tasks`: a page of tasks in one state, filtered by queue, handler and
//! text in params or error, oldest or newest first, paged by key (the next
//! page starts after the last task read, so a deep page costs what the first
//! does), with how many tasks match. A search reads a bounded number of
//! candidates per page: a page that stopped at that budget says so and its
//! "next page" goes on from there. Dead tasks get retry buttons and the bulk
//! actions; waiting ones a cancel button.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use conveyor_core::{Count, ListOrder, ListParams, Search, TaskRecord};
use conveyor_core::{TaskId, TaskState, Timestamp, Transition};
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
    search: Option<String>,
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
    pub(crate) search: Option<Search>,
    pub(crate) newest_first: bool,
}

impl Filter {
    /// The link to the count of these filters.
    pub(crate) fn count_link(&self) -> String {
        self.link(None).replacen("/tasks?", "/live/count?", 1)
    }

    /// The link to a page of these filters, after `after` when given.
    pub(crate) fn link(&self, after: Option<TaskId>) -> String {
        let mut pairs = vec![("state", self.state.as_str().to_string())];
        if let Some(q) = &self.queue {
            pairs.push(("queue", q.clone()));
        }
        if let Some(h) = &self.handler {
            pairs.push(("handler", h.clone()));
        }
        if let Some(s) = &self.search {
            pairs.push(("search", s.text().to_string()));
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
            can_cancel: Transition::Cancel.sources().contains(&r.state),
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
    search: String,
    newest_first: bool,
    rows: Vec<Row>,
    /// How many tasks match, or why there is no count (when counted with
    /// the page).
    matching: Result<Count, String>,
    /// With a search, the count comes after the page from this link.
    count_link: Option<String>,
    /// Set when the page read its budget of candidates before it was full:
    /// how many it read.
    stopped_early: Option<u64>,
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
        search: field(query.search.clone()).and_then(|s| Search::new(&s)),
        newest_first,
    })
}

/// The count of `params` and `search`, or why there is none.
async fn count(
    state: &AppState,
    params: &ListParams,
    search: Option<&Search>,
) -> Result<Count, String> {
    state
        .backend
        .count(params, search)
        .await
        .map_err(|e| format!("No count: {}", e.chain()))
}

/// The sentence saying how many tasks match (`/live/count`, and inline).
#[derive(Template)]
#[template(path = "count.html")]
struct CountPart {
    matching: Result<Count, String>,
    state: &'static str,
    queue: String,
    handler: String,
    search: String,
}

/// `GET /live/count?state=&queue=&handler=&search=`: how many tasks the
/// filters match, as the tasks page shows it (fetched after the page when
/// it has a search).
pub(crate) async fn count_part(
    State(state): State<AppState>,
    Query(query): Query<TasksQuery>,
) -> Response {
    let filter = match filter(&query) {
        Ok(f) => f,
        Err(e) => return error_page(&state, e),
    };
    let params = ListParams::new(filter.state)
        .queue_opt(filter.queue.as_deref())
        .handler_opt(filter.handler.as_deref());
    let matching = count(&state, &params, filter.search.as_ref()).await;
    render(&CountPart {
        matching,
        state: filter.state.as_str(),
        queue: filter.queue.clone().unwrap_or_default(),
        handler: filter.handler.clone().unwrap_or_default(),
        search: filter
            .search
            .as_ref()
            .map(|s| s.text().to_string())
            .unwrap_or_default(),
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
    let search = filter.search.as_ref();
    let found = state.backend.page(&params, search).await?;
    let stopped_early = found.stopped_early(PAGE).then_some(found.scanned);
    let next = found.next.map(|id| filter.link(Some(id)));
    // The count of what the filters match: kept by the store without a
    // search (cheap, with the page), read after the page with one (it may
    // read up to 100,000 candidates). A failed read says so rather than
    // showing a count of zero.
    let (matching, count_link) = match search {
        None => (count(state, &params, None).await, None),
        Some(_) => (Ok(Count::exact(0)), Some(filter.count_link())),
    };
    // The queues to choose from.
    let stats = state.backend.stats().await.unwrap_or_default();
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
    let can_act = !page.read_only && state.backend.administration().is_ok();
    Ok(TasksPage {
        states: TaskState::ALL.iter().map(|s| s.as_str()).collect(),
        queues: stats.into_iter().map(|q| q.queue).collect(),
        state: filter.state.as_str(),
        queue: filter.queue.clone().unwrap_or_default(),
        handler: filter.handler.clone().unwrap_or_default(),
        newest_first: filter.newest_first,
        search: filter
            .search
            .as_ref()
            .map(|s| s.text().to_string())
            .unwrap_or_default(),
        rows: found.tasks.into_iter().map(|r| Row::new(r, now)).collect(),
        matching,
        count_link,
        stopped_early,
        here: filter.link(after),
        first: after.map(|_| filter.link(None)),
        next,
        dead,
        can_act,
        page,
    })
}
