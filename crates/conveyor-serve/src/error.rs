//! How a failure becomes an HTTP answer: a status that says whose fault it
//! is, and a JSON body with a message for people.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use conveyor_core::Error;

use crate::views::ErrorView;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong (400): a bad field, an unknown id format.
    #[error("{0}")]
    BadRequest(String),
    /// No such task (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with where the thing stands (409): a
    /// workflow retried while it still runs.
    #[error("{0}")]
    Conflict(String),
    /// The method is not one the route takes (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request took longer than the server allows (408).
    #[error("{0}")]
    Timeout(String),
    /// The body is larger than the server reads (413); the limit in bytes.
    #[error(
        "the request body is larger than this server's limit of {0} bytes ({mib}); \
         send fewer tasks per request, or raise --max-body",
        mib = mib(*.0)
    )]
    TooLarge(usize),
    /// A task's params are more than the backend stores (413), its words.
    #[error("{0}")]
    ValueTooLarge(String),
    /// The server is read-only (403).
    #[error("this server is read-only (--read-only): actions are refused")]
    ReadOnly,
    /// The backend lacks what the request needs (501).
    #[error("{0}")]
    Unsupported(String),
    /// The backend cannot be reached now (503); try again.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Unsupported(_) => ApiError::Unsupported(e.chain().to_string()),
            Error::NotFound(id) => ApiError::NotFound(format!("no task {}", id.0)),
            Error::InvalidConfig(m) | Error::Codec(m) => ApiError::BadRequest(m.clone()),
            _ if e.backend_kind() == Some(conveyor_core::BackendErrorKind::TooLarge) => {
                ApiError::ValueTooLarge(e.chain().to_string())
            }
            _ if e.is_transient() => ApiError::Unavailable(e.chain().to_string()),
            _ => ApiError::Internal(e.chain().to_string()),
        }
    }
}

impl ApiError {
    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) | ApiError::ValueTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ReadOnly => StatusCode::FORBIDDEN,
            ApiError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "api request failed");
        }
        let body = Json(ErrorView {
            error: self.to_string(),
        });
        (self.status(), body).into_response()
    }
}

/// A size in MiB for people: `16 MiB`, `0.5 MiB`.
fn mib(bytes: usize) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m.fract() == 0.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.2} MiB")
    }
}

/// A JSON answer or an [`ApiError`].
pub type ApiResult<T> = Result<Json<T>, ApiError>;
