//! The dashboard's stylesheet and script, built into the binary: the pages
//! load nothing from any other server and work offline.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::extract::Path;

const CSS: &str = include_str!("../../assets/dashboard.css");
const SCRIPT: &str = include_str!("../../assets/live.js");

/// `GET /assets/{name}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "dashboard.css" => (CSS, "text/css; charset=utf-8"),
        "live.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
