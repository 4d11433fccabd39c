//! The OpenAPI document, generated from the handlers' annotations and the
//! views' types (served at `/openapi.json`): a route or a field changed in
//! the code changes the document with it.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::Ref;
use utoipa::{Modify, OpenApi};

use crate::api::{dead, overview, queues, schedules, tasks, workflows};
use crate::state::ServeOptions;
use crate::views::{OrderName, StateName};

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
        tasks::count,
        tasks::get,
        tasks::wait,
        tasks::cancel,
        overview::stats,
        overview::workers,
        queues::list,
        queues::pause,
        queues::resume,
        dead::requeue,
        dead::requeue_matching,
        dead::purge,
        workflows::submit,
        workflows::list,
        workflows::get,
        workflows::cancel,
        workflows::retry,
        schedules::list,
        schedules::get,
        schedules::put,
        schedules::remove,
        schedules::pause,
        schedules::resume,
        schedules::trigger,
    ),
    components(schemas(OrderName, StateName, workflows::WorkflowStateName))
)]
pub struct ApiDoc;

/// The document a server with `options` serves: with a token, every
/// operation declares it.
pub(crate) fn document(options: &ServeOptions) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if options.token.is_some() {
        BearerToken.modify(&mut doc);
    }
    doc
}

/// Declares the bearer token every request carries.
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
        // Every operation may then answer 401.
        let unauthorized = ResponseBuilder::new()
            .description("No token, or a wrong one")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorView")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .insert("401".to_string(), unauthorized.clone().into());
            }
        }
    }
}
