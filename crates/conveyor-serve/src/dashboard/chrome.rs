//! What every page shares: the frame around it (navigation, the backend,
//! read-only, a notice), rendering a template, and the error page.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use conveyor_core::Timestamp;

use crate::error::ApiError;
use crate::state::AppState;

/// The frame of a page.
pub(crate) struct Chrome {
    /// The page's title.
    pub(crate) title: String,
    /// Which navigation entry is current: `overview`, `tasks`, `scheduled`,
    /// `dead`, `workers`, or empty.
    pub(crate) nav: &'static str,
    /// The backend's kind.
    pub(crate) backend: &'static str,
    /// Actions are refused: their buttons are not shown.
    pub(crate) read_only: bool,
    /// A message after an action (from the redirect's `notice=` code).
    pub(crate) notice: Option<String>,
    /// The server has a token: the header offers to log out.
    pub(crate) logout: bool,
}

impl Chrome {
    /// The frame for a page of `state`'s server.
    pub(crate) fn new(state: &AppState, title: impl Into<String>, nav: &'static str) -> Chrome {
        Chrome {
            title: title.into(),
            nav,
            backend: state.backend.kind(),
            read_only: state.options.read_only,
            notice: None,
            logout: state.options.token.is_some(),
        }
    }

    /// With the notice a `notice=` code stands for; anything else in the
    /// query is shown as nothing (a link cannot make the page say what it
    /// likes).
    pub(crate) fn notice(mut self, notice: Option<String>) -> Chrome {
        self.notice = notice
            .as_deref()
            .and_then(super::notice::Notice::parse)
            .map(|n| n.to_string());
        self
    }
}

/// A rendered template as a page; a template that fails to render (a bug)
/// is a 500 with the reason.
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a dashboard page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the page failed to render: {e}"),
            )
                .into_response()
        }
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Chrome,
    status: u16,
    message: String,
}

/// An error as a page with its status (501 for a part the backend lacks,
/// with the reason; 404 for a missing task; …).
pub(crate) fn error_page(state: &AppState, error: impl Into<ApiError>) -> Response {
    let error = error.into();
    let status = error.status();
    let page = ErrorPage {
        page: Chrome::new(state, status.canonical_reason().unwrap_or("Error"), ""),
        status: status.as_u16(),
        message: error.to_string(),
    };
    (status, render(&page)).into_response()
}

/// How long ago `then` was, short: `4s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub(crate) fn age(now: Timestamp, then: Timestamp) -> String {
    let s = now.since(then).as_secs();
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3_600, (s % 3_600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// A time for people: `2026-11-23 17:32:37 UTC`.
pub(crate) fn when(t: Timestamp) -> String {
    let text = crate::views::rfc3339(t);
    // `2026-11-23T17:32:37.123Z` → `2026-11-23 17:32:37 UTC`
    match text.get(..19) {
        Some(head) => format!("{} UTC", head.replacen('T', " ", 1)),
        None => text,
    }
}

/// A form's text field: absent when empty.
pub(crate) fn field(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `path` when it is a path on this server, else `/`: a redirect after a
/// form never leads to another site (`//host` and `/\\host` are other
/// sites to a browser).
pub(crate) fn local_path(path: Option<&str>) -> String {
    match path {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_times_read_well() {
        let now = Timestamp(10_000_000);
        assert_eq!(age(now, Timestamp(10_000_000 - 4_000)), "4s");
        assert_eq!(age(now, Timestamp(10_000_000 - 200_000)), "3m 20s");
        assert_eq!(age(now, Timestamp(10_000_000 - 7_500_000)), "2h 5m");
        assert_eq!(age(now, now.plus(std::time::Duration::from_secs(5))), "0s");
        assert_eq!(when(Timestamp(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(field(Some("  ".into())), None);
        assert_eq!(field(Some(" q ".into())), Some("q".into()));
        assert_eq!(local_path(Some("/tasks?state=dead")), "/tasks?state=dead");
        for other in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "x",
            "/a\nb",
        ] {
            assert_eq!(local_path(Some(other)), "/", "{other}");
        }
        assert_eq!(local_path(None), "/");
    }
}
