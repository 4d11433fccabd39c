//! `/`: every queue's counts by state and the age of its oldest ready task,
//! the throughput and backlog charts, the workers alive, and which parts
//! the backend has. The part below the heading is re-sent live.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use conveyor_core::{Part, FORGET_WORKERS_AFTER};
use conveyor_core::{TaskState, Timestamp};
use serde::Deserialize;

use super::charts;
use super::chrome::{age, render, Chrome};
use crate::extract::Query;
use crate::state::AppState;

/// One queue's row.
pub(crate) struct QueueRow {
    name: String,
    /// Counts in [`TaskState::ALL`] order.
    counts: Vec<(&'static str, u64)>,
    /// How long its oldest ready task has waited, or `-`.
    oldest_ready: String,
    /// No worker takes its tasks until it is resumed.
    paused: bool,
}

/// The live part of the overview.
#[derive(Template)]
#[template(path = "overview_body.html")]
pub(crate) struct OverviewBody {
    /// The state names, in order, for the table's head.
    states: Vec<&'static str>,
    queues: Vec<QueueRow>,
    /// Totals per state over every queue.
    totals: Vec<(&'static str, u64)>,
    /// Why the counts are missing, when they are.
    counts_error: Option<String>,
    /// Queues can be paused here: the backend can, and actions are allowed.
    can_pause: bool,
    /// Why the paused queues are unknown, when the backend failed to say.
    paused_error: Option<String>,
    /// Alive / known workers, or why they are unknown.
    workers: Result<(usize, usize), String>,
    /// Tasks waiting for a handler no live worker of their queue has.
    unserved: Vec<conveyor_core::Unserved>,
    throughput_svg: String,
    backlog_svg: String,
    /// Why the charts have a gap, when the last sample failed.
    sample_error: Option<String>,
    /// Seconds between samples.
    sample_every: u64,
    /// When this was read.
    read_at: String,
}

/// The overview page.
#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    page: Chrome,
    body: String,
    /// Each part: its description and whether the backend has it.
    parts: Vec<(&'static str, bool)>,
}

/// Query of a page that may carry a notice after an action.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    /// The message to show.
    pub(crate) notice: Option<String>,
}

/// The overview's live part, read now.
pub(crate) async fn body(state: &AppState) -> OverviewBody {
    let now = Timestamp::now();
    let states: Vec<&'static str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    let (paused, paused_error) = match state.backend.queue_control() {
        Ok(control) => match control.paused().await {
            Ok(names) => (names, None),
            Err(e) => (Vec::new(), Some(e.chain().to_string())),
        },
        Err(_) => (Vec::new(), None),
    };
    let (queues, counts_error) = match state.backend.stats().await {
        Ok(stats) => {
            let mut rows = stats
                .into_iter()
                .map(|q| QueueRow {
                    counts: TaskState::ALL
                        .iter()
                        .map(|s| (s.as_str(), q.count(*s)))
                        .collect(),
                    oldest_ready: q
                        .oldest_ready
                        .map(|t| age(now, t))
                        .unwrap_or_else(|| "-".into()),
                    paused: paused.contains(&q.queue),
                    name: q.queue,
                })
                .collect::<Vec<_>>();
            // A paused queue is listed even before it holds a task.
            for name in &paused {
                if !rows.iter().any(|r| &r.name == name) {
                    rows.push(QueueRow {
                        name: name.clone(),
                        counts: TaskState::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
                        oldest_ready: "-".into(),
                        paused: true,
                    });
                }
            }
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            (rows, None)
        }
        Err(e) => (Vec::new(), Some(e.chain().to_string())),
    };
    let totals = TaskState::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), queues.iter().map(|q| q.counts[i].1).sum()))
        .collect();
    let workers = match state.backend.registry() {
        Ok(registry) => match registry.workers(now.minus(FORGET_WORKERS_AFTER)).await {
            Ok(all) => Ok((all.iter().filter(|w| w.is_alive(now)).count(), all.len())),
            Err(e) => Err(e.chain().to_string()),
        },
        Err(e) => Err(e.chain().to_string()),
    };
    let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    // Best effort: a failure here leaves the warning out, not the page.
    let unserved = conveyor_core::unserved(&*state.backend, &names, now)
        .await
        .unwrap_or_default();
    let history = &state.history;
    OverviewBody {
        states,
        queues,
        totals,
        counts_error,
        can_pause: state.backend.queue_control().is_ok() && !state.options.read_only,
        paused_error,
        workers,
        unserved,
        throughput_svg: charts::throughput(&history.rates()),
        backlog_svg: charts::backlog(&history.samples()),
        sample_error: history.last_error(),
        sample_every: state.options.sample_every.as_secs().max(1),
        read_at: super::chrome::when(now),
    }
}

/// `GET /`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let body = body(&state).await;
    let body = match askama::Template::render(&body) {
        Ok(html) => html,
        Err(e) => format!("<p class=\"error\">the overview failed to render: {e}</p>"),
    };
    let has = state.backend.parts();
    let parts = Part::ALL
        .iter()
        .map(|p| (p.describe(), has.contains(p)))
        .collect();
    render(&OverviewPage {
        page: Chrome::new(&state, "Overview", "overview").notice(query.notice),
        body,
        parts,
    })
}
