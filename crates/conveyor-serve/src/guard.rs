//! The checks in front of every route, in order:
//!
//! 1. **Token.** With a token set, a request without `Authorization: Bearer
//!    TOKEN`, or the dashboard's cookie holding it, gets 401 (compared in
//!    constant time); a browser asking for a dashboard page is sent to
//!    `/login` instead. `/health` is open, so a load balancer can probe
//!    without the secret, and so are the login and logout pages and the
//!    stylesheet.
//! 2. **Cross-site requests.** An action (any method but GET, HEAD and
//!    OPTIONS) sent by a browser from another site is refused with 403: the
//!    browser says so in `Sec-Fetch-Site`, or sends an `Origin` that is not
//!    this server's. Without this, a page on any site could make a visitor's
//!    browser cancel tasks on a dashboard it can reach (a loopback server has
//!    no token to stop it). Programs send neither header and pass.
//! 3. **Read-only.** With `--read-only`, every action gets 403 (logging out
//!    acts only on the browser's cookie, and is allowed).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use subtle::ConstantTimeEq;

use crate::dashboard::{login, COOKIE, LOGIN_PATH, LOGOUT_PATH};
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
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))
}

/// The token the dashboard's cookie holds, if the request has the cookie.
fn cookie_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| login::decode(value))
}

/// True when the request carries the token, in the header or the cookie.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let token = token.as_bytes();
    bearer(headers).is_some_and(|b| same(b, token))
        || cookie_token(headers).is_some_and(|c| same(&c, token))
}

/// Paths open without the token.
fn open(path: &str) -> bool {
    path == "/health" || path == LOGIN_PATH || path == LOGOUT_PATH || path.starts_with("/assets/")
}

/// Paths a person opens in a browser, sent to the login page without the token.
fn page(path: &str) -> bool {
    !["/api/", "/live/", "/actions/", "/metrics", "/openapi.json"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
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
        let path = request.uri().path();
        if !open(path) && !authorized(headers, token) {
            if request.method() == Method::GET && page(path) {
                let here = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                let query = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
                return Redirect::to(&format!("{LOGIN_PATH}?{query}")).into_response();
            }
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
    if action && options.read_only && request.uri().path() != LOGOUT_PATH {
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
    fn the_cookie_carries_the_token() {
        let value = format!("a=b; {COOKIE}={}; c=d", login::encode("s3cret"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            header::HeaderValue::from_str(&value).expect("ascii"),
        );
        assert!(authorized(&h, "s3cret"));
        assert!(!authorized(&h, "s3cre"));
        assert!(!authorized(
            &headers(&[("cookie", "conveyor_token=zz")]),
            "s3cret"
        ));
        assert!(authorized(
            &headers(&[("authorization", "Bearer s3cret")]),
            "s3cret"
        ));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
