//! `/actions/…`: what the dashboard's buttons post. Each answers with a
//! redirect back to the page it came from (`back`, a path on this server),
//! with a notice saying what happened, so a reload never repeats it. The
//! guard has already refused it in read-only mode and from other sites.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use conveyor_core::Search;
use conveyor_core::TaskState;
use serde::Deserialize;

use super::chrome::{error_page, field, local_path};
use super::notice::Notice;
use crate::api::tasks::parse_id;
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

/// A button's form: where to come back to.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Back {
    back: Option<String>,
}

impl Back {
    /// Where to come back to.
    pub(crate) fn back(&self) -> Option<&str> {
        self.back.as_deref()
    }
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
pub(crate) fn answer<E: Into<ApiError>>(
    state: &AppState,
    back: Option<&str>,
    did: Result<Notice, E>,
) -> Response {
    let notice = match did {
        Ok(notice) => notice,
        Err(e) => return error_page(state, e),
    };
    let back = local_path(back);
    let sep = if back.contains('?') { '&' } else { '?' };
    let notice = serde_urlencoded::to_string([("notice", notice.code())]).unwrap_or_default();
    Redirect::to(&format!("{back}{sep}{notice}")).into_response()
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
            TaskState::Cancelled => Notice::Cancelled(id.0),
            s => Notice::NotCancelled(id.0, s),
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
            Notice::Requeued(id.0)
        } else {
            Notice::NotRequeued(id.0)
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
    let did = moved.map(Notice::RequeuedMatching);
    answer(&state, form.back.as_deref(), did)
}

/// `POST /actions/dead/purge`: deletes the dead tasks of a queue (or of
/// every queue).
pub(crate) async fn purge(State(state): State<AppState>, Form(form): Form<Matching>) -> Response {
    let queue = field(form.queue);
    let purged = state.backend.purge_dead(queue.as_deref()).await;
    let did = purged.map(Notice::Purged);
    answer(&state, form.back.as_deref(), did)
}

/// `POST /actions/queues/{queue}/pause`: no worker takes the queue's tasks
/// until it is resumed.
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    if let Err(e) = crate::names::check("queue", &queue) {
        return error_page(&state, e);
    }
    let changed = state.backend.pause_queue(&queue).await;
    let did = changed.map(|changed| match changed {
        true => Notice::Paused,
        false => Notice::AlreadyPaused,
    });
    answer(&state, form.back.as_deref(), did)
}

/// `POST /actions/queues/{queue}/resume`: the queue's tasks run again.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Form(form): Form<Back>,
) -> Response {
    if let Err(e) = crate::names::check("queue", &queue) {
        return error_page(&state, e);
    }
    let changed = state.backend.resume_queue(&queue).await;
    let did = changed.map(|changed| match changed {
        true => Notice::Resumed,
        false => Notice::NotPaused,
    });
    answer(&state, form.back.as_deref(), did)
}
