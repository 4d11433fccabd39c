//! `/login`: a browser cannot send `Authorization: Bearer` with a link, so
//! on a server with a token the dashboard asks for it once and keeps it in a
//! cookie: `HttpOnly` (no script reads it) and `SameSite=Strict` (no other
//! site's page sends it). The guard accepts the cookie as it does the header.
//! `POST /logout` (the button in every page's header) clears the cookie.

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::chrome::{local_path, render, Chrome};
use crate::extract::Query;
use crate::state::AppState;

/// The login page's path (open without the token).
pub(crate) const LOGIN_PATH: &str = "/login";
/// Where the log-out button posts (open without the token, allowed
/// read-only: it only clears the browser's cookie).
pub(crate) const LOGOUT_PATH: &str = "/logout";
/// The cookie that carries the token, hex-encoded.
pub(crate) const COOKIE: &str = "conveyor_token";

/// Where to go after logging in.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// The login form as posted.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: Option<String>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: Chrome,
    next: String,
    wrong: bool,
}

/// The token as the cookie holds it: hex, which any cookie may carry.
pub(crate) fn encode(token: &str) -> String {
    token.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The cookie's value back to the token's bytes (`None` when it is not hex).
pub(crate) fn decode(value: &str) -> Option<Vec<u8>> {
    if !value.len().is_multiple_of(2) {
        return None;
    }
    (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(value.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `GET /login`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = local_path(query.next.as_deref());
    if state.options.token.is_none() {
        return Redirect::to(&next).into_response();
    }
    render(&LoginPage {
        page: Chrome::new(&state, "Log in", ""),
        next,
        wrong: false,
    })
}

/// `POST /login`: the right token sets the cookie and goes on.
pub(crate) async fn submit(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let next = local_path(form.next.as_deref());
    let Some(expected) = state.options.token.as_deref() else {
        return Redirect::to(&next).into_response();
    };
    let given = form.token.unwrap_or_default();
    if !crate::guard::same(given.as_bytes(), expected.as_bytes()) {
        let page = LoginPage {
            page: Chrome::new(&state, "Log in", ""),
            next,
            wrong: true,
        };
        return (StatusCode::UNAUTHORIZED, render(&page)).into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        encode(expected)
    );
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, next)],
    )
        .into_response()
}

/// `POST /logout`: the cookie is cleared (expired at once), and the browser
/// goes to the login page (or the overview, on a server with no token).
pub(crate) async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, LOGIN_PATH.to_string()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_round_trips_any_token() {
        for token in ["abc", "with space; and=signs", "ünï"] {
            assert_eq!(decode(&encode(token)).as_deref(), Some(token.as_bytes()));
        }
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
    }
}
