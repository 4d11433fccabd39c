//! The checks in front of every route, in order:
//!
//! 1. **Token.** With a token set, a request without `Authorization: Bearer
//!    TOKEN` gets 401 (compared in constant time). `/health` is open, so a
//!    load balancer can probe without the secret.
//! 2. **Cross-site requests.** An action (any method but GET, HEAD and
//!    OPTIONS) sent by a browser from another site is refused with 403: the
//!    browser says so in `Sec-Fetch-Site`, or sends an `Origin` that is not
//!    this server's. Without this, a page on any site could make a visitor's
//!    browser cancel tasks on a dashboard it can reach (a loopback server has
//!    no token to stop it). Programs send neither header and pass.
//! 3. **Read-only.** With `--read-only`, every action gets 403.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::ErrorView;

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = Json(ErrorView {
        error: message.to_string(),
    });
    (status, body).into_response()
}

/// Equal, in a time that does not tell where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))
}

/// True when a browser says the request comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let origin = origin.as_bytes();
    let authority = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    authority != Some(host.as_bytes())
}

/// The middleware.
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let options = &state.options;
    let headers = request.headers();
    if let Some(token) = &options.token {
        let open = request.uri().path() == "/health";
        if !open && !bearer(headers).is_some_and(|b| same(b, token.as_bytes())) {
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                "this server needs its token: Authorization: Bearer TOKEN",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    let action = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if action && cross_site(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "a request from another site may not act on this server",
        );
    }
    if action && options.read_only {
        return ApiError::ReadOnly.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, header::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_is_told_by_fetch_metadata_or_origin() {
        assert!(!cross_site(&headers(&[])), "a program sends neither");
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        let own = [
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(!cross_site(&headers(&own)));
        let other = [
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(cross_site(&headers(&other)));
        assert!(cross_site(&headers(&[("origin", "null")])));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
