//! `/api/v1`: the authenticated API. Every route is registered through [`routes`], which records
//! it in the OpenAPI document at the same time.

pub mod cases;
mod checks;
pub mod console;
pub mod contacts;
pub mod imports;
pub mod invitations;
pub mod responses;
pub mod units;
pub mod webhooks;

use super::AppState;
use super::error::ErrorBody;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hearback",
        description = "SMS-first conversational feedback gateway. Every `/api/v1` call needs `Authorization: Bearer <api key>`; errors are `{\"error\":{\"code\",\"message\",\"details\"}}`."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "units", description = "The organisation tree"),
        (name = "invitations", description = "Customer events that start surveys"),
        (name = "imports", description = "Files of customer events"),
        (name = "responses", description = "Surveys and their answers: pages, CSV and JSON-lines exports"),
        (name = "cases", description = "Unhappy customers' cases and their SMS threads"),
        (name = "webhooks", description = "Events pushed to the CRM: endpoints and deliveries"),
        (name = "contacts", description = "One customer's card and their erasure (GDPR)"),
        (name = "console", description = "The development channel's outbox")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The answers every operation can give besides its own, documented once here so that no route
/// forgets one: a query string that does not parse (400), a missing or bad key (401), a user's
/// key outside its routes (403); and for a body, malformed JSON (400), too large (413), not JSON
/// (415).
pub struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, ResponseBuilder, content::ContentBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let mut common = vec![
                    ("400", "A parameter or the body does not parse"),
                    ("401", "Missing, malformed, unknown or revoked API key"),
                    ("403", "A user's key outside the routes it reaches"),
                ];
                if operation.request_body.is_some() {
                    common.push(("413", "The body is too large"));
                    common.push(("415", "The body is not of a type the route takes"));
                }
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// The `/api/v1` routes with their documentation, paths relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(units::list_units, units::create_unit))
        .routes(routes!(units::get_unit))
        .routes(routes!(
            invitations::create_invitation,
            invitations::list_invitations
        ))
        .routes(routes!(invitations::get_invitation))
        .routes(routes!(imports::create_import))
        .routes(routes!(imports::get_import))
        .routes(routes!(responses::list_responses))
        .routes(routes!(console::list_console_messages))
        .routes(routes!(cases::list_cases))
        .routes(routes!(cases::get_case))
        .routes(routes!(cases::send_case_message))
        .routes(routes!(cases::assign_case))
        .routes(routes!(cases::resolve_case))
        .routes(routes!(webhooks::list_endpoints, webhooks::create_endpoint))
        .routes(routes!(webhooks::replay_endpoint))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(contacts::get_contact, contacts::erase_contact))
}
