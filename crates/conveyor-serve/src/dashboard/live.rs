//! Live updates: a page's live part, rendered again on the server and sent
//! as a server-sent event at the server's refresh pace. The page's script
//! puts each event's HTML in place; a browser reconnects by itself after a
//! dropped connection, and a closed page ends its stream. Every viewer of a
//! part shares one render per refresh. A stream ends when the server stops
//! (so a shutdown never waits on an open tab).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use super::{overview, workers};
use crate::state::AppState;

/// `GET /live/overview`: the overview's live part.
pub(crate) async fn overview(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    stream(state, |state| async move {
        let fresh = state.options.refresh_every / 2;
        let render = || async { html(&overview::body(&state).await) };
        state.live.overview.get(fresh, render).await
    })
}

/// `GET /live/workers`: the workers page's live part.
pub(crate) async fn workers(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    stream(state, |state| async move {
        let fresh = state.options.refresh_every / 2;
        let render = || async { html(&workers::body(&state).await) };
        state.live.workers.get(fresh, render).await
    })
}

fn html(template: &impl Template) -> String {
    template
        .render()
        .unwrap_or_else(|e| format!("<p class=\"error\">the update failed to render: {e}</p>"))
}

/// Every refresh, one event holding what `read` renders (shared by every
/// viewer of the part: see `super::shared_render`).
fn stream<F, Fut>(state: AppState, read: F) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Arc<str>> + Send,
{
    let every = state.options.refresh_every;
    let stopping = state.stopping.clone();
    let events = futures_util::stream::unfold((state, read), move |(state, read)| async move {
        tokio::time::sleep(every).await;
        let html = read(state.clone()).await;
        Some((Ok(Event::default().data(&*html)), (state, read)))
    })
    .take_until(stopping.cancelled_owned());
    Sse::new(events).keep_alive(KeepAlive::default())
}
