//! The web dashboard: pages rendered on the server (askama templates, SVG
//! charts drawn by plotters), kept live by server-sent events and a few
//! lines of script, with no build step and nothing fetched from elsewhere.
//!
//! | page | what |
//! |---|---|
//! | `/` | per queue: counts by state, oldest ready age, paused or running (pause, resume); charts of throughput and backlog; live |
//! | `/tasks?state=&queue=&handler=&order=&after=` | a filtered page of tasks, key paging; cancel, retry, purge |
//! | `/tasks/{id}` | one task: params, result, error, timeline; cancel or retry it |
//! | `/workers` | live workers and recently gone ones; live |
//! | `/workflows`, `/workflows/{id}` | open a workflow by id; its graph (SVG, nodes coloured by state, linked to their tasks) and nodes; cancel it, or retry its failed part |
//! | `/login` | the token, once, for a browser (kept in a cookie); `POST /logout` forgets it |
//!
//! Actions are forms posted to `/actions/…`, which answer with a redirect
//! back to the page (so a reload never repeats them); the guard in front of
//! every route refuses them in read-only mode and from other sites. A page
//! the backend cannot serve says which part is missing, never a blank.

mod actions;
mod assets;
mod charts;
mod chrome;
mod graph_layout;
pub(crate) mod history;
mod live;
pub(crate) mod login;
mod notice;
mod overview;
mod schedules;
pub(crate) mod shared_render;
mod task;
mod tasks;
mod workers;
mod workflow;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub(crate) use chrome::error_page;
pub(crate) use login::{COOKIE, LOGIN_PATH, LOGOUT_PATH};

/// The dashboard's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/tasks", get(tasks::page))
        .route("/tasks/{id}", get(task::page))
        .route("/workers", get(workers::page))
        .route("/schedules", get(schedules::page))
        .route("/actions/schedules/{name}/pause", post(schedules::pause))
        .route("/actions/schedules/{name}/resume", post(schedules::resume))
        .route(
            "/actions/schedules/{name}/trigger",
            post(schedules::trigger),
        )
        .route("/workflows", get(workflow::open))
        .route("/workflows/{id}", get(workflow::page))
        .route("/actions/workflows/{id}/cancel", post(workflow::cancel))
        .route("/actions/workflows/{id}/retry", post(workflow::retry))
        .route("/live/overview", get(live::overview))
        .route("/live/workers", get(live::workers))
        .route("/live/count", get(tasks::count_part))
        .route("/assets/{name}", get(assets::asset))
        .route(LOGIN_PATH, get(login::page).post(login::submit))
        .route(LOGOUT_PATH, post(login::logout))
        .route("/actions/tasks/{id}/cancel", post(actions::cancel))
        .route("/actions/tasks/{id}/retry", post(actions::retry))
        .route("/actions/dead/retry", post(actions::retry_matching))
        .route("/actions/dead/purge", post(actions::purge))
        .route("/actions/queues/{queue}/pause", post(actions::pause))
        .route("/actions/queues/{queue}/resume", post(actions::resume))
}
