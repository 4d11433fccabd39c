//! No error answer goes out empty: an unknown route (404), a method the
//! route does not take (405), a request past the time limit (408) and a body
//! past the size limit (413) say what happened — `{"error": "…"}` to
//! programs (under `/api`, and the other machine routes), the dashboard's
//! error page to people. The framework and the timeout layer answer these
//! with an empty body or plain text; this is the one place that words them.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::dashboard::error_page;
use crate::error::ApiError;
use crate::state::AppState;

/// Paths programs call: errors there are JSON.
fn machine(path: &str) -> bool {
    path == "/api"
        || ["/api/", "/live/", "/metrics", "/openapi.json", "/health"]
            .iter()
            .any(|p| path.starts_with(p))
}

/// `error` as the path's kind of answer.
fn answer(state: &AppState, path: &str, error: ApiError) -> Response {
    if machine(path) {
        error.into_response()
    } else {
        error_page(state, error)
    }
}

/// The fallback of unknown routes.
pub(crate) async fn not_found(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let error = ApiError::NotFound(format!("no route {method} {}", shorten(path)));
    answer(&state, path, error)
}

/// The fallback of a known route asked with another method (axum adds the
/// `Allow` header).
pub(crate) async fn method_not_allowed(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
) -> Response {
    let path = uri.path();
    let error = ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", shorten(path)));
    answer(&state, path, error)
}

/// A path as an error message quotes it: at most 200 bytes.
fn shorten(path: &str) -> String {
    match path.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &path[..end]),
        None => path.to_string(),
    }
}

/// The middleware: words the errors that arrive without a body of ours.
pub(crate) async fn fill(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let ours =
        kind.is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    let worded = kind.is_some();
    let error = match status {
        _ if ours => return response,
        // The framework's plain-text rejection says "length limit exceeded"
        // without the limit.
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(state.options.max_body),
        _ if worded => return response,
        StatusCode::REQUEST_TIMEOUT => ApiError::Timeout(format!(
            "the request took longer than this server's limit of {} (--request-timeout)",
            humantime::format_duration(state.options.request_timeout)
        )),
        StatusCode::NOT_FOUND => {
            ApiError::NotFound(format!("no route {method} {}", shorten(&path)))
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", shorten(&path)))
        }
        _ => return response,
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut answer = answer(&state, &path, error);
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}
