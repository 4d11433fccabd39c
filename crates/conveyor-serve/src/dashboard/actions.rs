//! `/actions/…`: what the dashboard's buttons post. Each answers with a
//! redirect back to the page it came from (`back`, a path on this server),
//! with a notice saying what happened, so a reload never repeats it. The
//! guard has already refused it in read-only mode and from other sites.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use conveyor::durable::Search;
use conveyor::TaskState;
use serde::Deserialize;

use super::chrome::{error_page, field, local_path};
use crate::api::tasks::parse_id;
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

/// A button's form: where to come back to.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Back {
    back: Option<String>,
}

/// The bulk actions' form: the filter, and where to come back to.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Matching {
    queue: Option<String>,
    handler: Option<String>,
    search: Option<String>,
    back: Option<String>,
}

/// What an action did: back to `back` with the notice added to its query,
/// or the error page.
fn answer<E: Into<ApiError>>(
    state: &AppState,
    back: Option<&str>,
    did: Result<String, E>,
) -> Response {
    let notice = match did {
        Ok(notice) => notice,
        Err(e) => return error_page(state, e),
    };
    let back = local_path(back);
    let sep = if back.contains('?') { '&' } else { '?' };
    let notice = serde_urlencoded::to_string([("notice", notice)]).unwrap_or_default();
    Redirect::to(&format!("{back}{sep}{notice}")).into_response()
}

fn plural(n: u64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// `POST /actions/tasks/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    let act = async {
        let id = parse_id(&id)?;
        let after = state.backend.cancel(id).await?;
        Ok::<_, ApiError>(match after {
            TaskState::Cancelled => format!("Task {} cancelled.", id.0),
            s => format!("Task {} was not cancelled: it is {s}.", id.0),
        })
    };
    answer(&state, form.back.as_deref(), act.await)
}

/// `POST /actions/tasks/{id}/retry`: a dead task runs again.
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    let act = async {
        let id = parse_id(&id)?;
        let moved = state.backend.requeue_dead(&[id]).await?;
        Ok::<_, ApiError>(if moved == 1 {
            format!("Task {} will run again.", id.0)
        } else {
            format!(
                "Task {} was not requeued: it is not dead, or an unfinished task holds its unique key.",
                id.0
            )
        })
    };
    answer(&state, form.back.as_deref(), act.await)
}

/// `POST /actions/dead/retry`: every dead task matching the filter runs again.
pub(crate) async fn retry_matching(
    State(state): State<AppState>,
    Form(form): Form<Matching>,
) -> Response {
    let (queue, handler) = (field(form.queue), field(form.handler));
    let search = field(form.search).and_then(|s| Search::new(&s));
    let moved = crate::bulk::requeue_dead_matching(
        &*state.backend,
        queue.as_deref(),
        handler.as_deref(),
        search.as_ref(),
    )
    .await;
    let did = moved.map(|n| format!("{} will run again.", plural(n, "dead task")));
    answer(&state, form.back.as_deref(), did)
}

/// `POST /actions/dead/purge`: deletes the dead tasks of a queue (or of
/// every queue).
pub(crate) async fn purge(State(state): State<AppState>, Form(form): Form<Matching>) -> Response {
    let queue = field(form.queue);
    let purged = state.backend.purge_dead(queue.as_deref()).await;
    let did = purged.map(|n| format!("{} deleted.", plural(n, "dead task")));
    answer(&state, form.back.as_deref(), did)
}

/// `POST /actions/queues/{queue}/pause`: no worker takes the queue's tasks
/// until it is resumed.
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    let changed = state.backend.pause_queue(&queue).await;
    let did = changed.map(|changed| match changed {
        true => format!("Queue {queue} paused."),
        false => format!("Queue {queue} was paused already."),
    });
    answer(&state, form.back.as_deref(), did)
}

/// `POST /actions/queues/{queue}/resume`: the queue's tasks run again.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    let changed = state.backend.resume_queue(&queue).await;
    let did = changed.map(|changed| match changed {
        true => format!("Queue {queue} resumed."),
        false => format!("Queue {queue} was not paused."),
    });
    answer(&state, form.back.as_deref(), did)
}
