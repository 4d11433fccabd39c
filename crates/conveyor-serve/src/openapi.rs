//! The OpenAPI document, generated from the handlers' annotations and the
//! views' types (served at `/openapi.json`): a route or a field changed in
//! the code changes the document with it.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{dead, overview, tasks};

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "conveyor",
        description = "Enqueue tasks, wait for their results, inspect and steer queues, \
                       on any conveyor backend."
    ),
    paths(
        tasks::enqueue,
        tasks::enqueue_many,
        tasks::list,
        tasks::get,
        tasks::wait,
        tasks::cancel,
        overview::stats,
        overview::workers,
        dead::requeue,
        dead::purge,
    ),
    modifiers(&BearerToken),
)]
pub struct ApiDoc;

/// Declares the bearer token every request carries when the server has one.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
}
