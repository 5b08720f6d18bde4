//! `/api/v1`: the authenticated API. Every route is registered through [`routes`], which records
//! it in the OpenAPI document at the same time.

pub mod cases;
pub mod console;
pub mod imports;
pub mod invitations;
pub mod responses;
pub mod units;

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
}
