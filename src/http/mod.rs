//! The HTTP edge: thin handlers over the storage layer, one error shape, metrics and a span per
//! request carrying the route template (never the concrete path, which may hold a phone number).

pub mod api;
pub mod auth;
mod error;
mod export;
mod health;
mod json;
pub mod metrics;
mod webhooks;

pub use error::{ApiError, ErrorBody, ErrorDetail};

use crate::config::ServerConfig;
use crate::providers::Provider;
use crate::storage::Storage;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub metrics: PrometheusHandle,
    /// The provider adapter of each configured channel, by channel name.
    pub channels: Arc<Channels>,
    pub public_url: Option<url::Url>,
    /// The flows that loaded, by id.
    pub flows: Arc<Flows>,
    /// `jobs.max_attempts`, for the send jobs queued by requests.
    pub send_max_attempts: u32,
    /// Commits customer messages in batches (see [`crate::storage::InboundWriter`]).
    pub inbound: crate::storage::InboundWriter,
    /// Turns events (requests, import rows) into invitations; holds the configured channels and
    /// the scheduling rules (`None` with `dispatch.immediate`).
    pub intake: crate::intake::Intake,
    /// `server.import_body_limit_bytes`.
    pub import_body_limit_bytes: u64,
    /// The alert rules (none until [`AppState::with_alert_rules`]).
    pub alert_rules: Arc<crate::alerts::AlertRules>,
    /// How cases are followed up; whether their notices are e-mailed.
    pub cases: CaseSettings,
    /// The addresses webhook endpoints may reach (`webhooks.allow_networks`).
    pub webhook_policy: Arc<crate::webhooks::AddressPolicy>,
}

/// `[cases]`, checked, and whether `[email]` is set.
#[derive(Debug, Clone)]
pub struct CaseSettings {
    pub close_after: Duration,
    pub reply_window: Duration,
    pub follow_up_fr: String,
    pub follow_up_en: String,
    pub email: bool,
}

impl CaseSettings {
    pub fn new(config: &crate::config::Config) -> CaseSettings {
        let defaults = crate::config::CasesConfig::default();
        CaseSettings {
            // Validated at load; the defaults stand in for a configuration built in code.
            close_after: config
                .cases
                .close_after()
                .or_else(|_| defaults.close_after())
                .unwrap_or(Duration::from_secs(72 * 3600)),
            reply_window: config
                .cases
                .reply_window()
                .or_else(|_| defaults.reply_window())
                .unwrap_or(Duration::from_secs(3600)),
            follow_up_fr: config.cases.follow_up_fr.clone(),
            follow_up_en: config.cases.follow_up_en.clone(),
            email: config.email.enabled(),
        }
    }
}

/// The flows that loaded, by id.
pub type Flows = BTreeMap<String, crate::flow::Flow>;

/// The provider adapter of each configured channel, by channel name.
pub type Channels = BTreeMap<String, Arc<dyn Provider>>;

/// Builds every channel's adapter; fails on the first channel whose keys cannot make one.
pub fn build_channels(
    config: &crate::config::Config,
) -> Result<Channels, (String, crate::providers::BuildError)> {
    let mut channels = Channels::new();
    for (name, channel) in config.effective_channels() {
        let provider = crate::providers::build(&channel).map_err(|e| (name.to_string(), e))?;
        channels.insert(name.to_string(), Arc::from(provider));
    }
    Ok(channels)
}

impl AppState {
    /// The state for a configuration; fails on a channel whose adapter cannot be built.
    pub fn new(
        storage: Storage,
        config: &crate::config::Config,
        flows: Arc<Flows>,
    ) -> Result<AppState, (String, crate::providers::BuildError)> {
        Ok(AppState {
            inbound: crate::storage::InboundWriter::start(
                storage.clone(),
                config.database.inbound_writers,
                None,
            ),
            storage,
            metrics: metrics::recorder(),
            channels: Arc::new(build_channels(config)?),
            public_url: config.server.public_url.clone(),
            intake: crate::intake::Intake::new(config, Arc::clone(&flows)),
            import_body_limit_bytes: config.server.import_body_limit_bytes,
            flows,
            send_max_attempts: config.jobs.max_attempts,
            alert_rules: Arc::new(crate::alerts::AlertRules::empty()),
            cases: CaseSettings::new(config),
            // Validated at load; a configuration built in code may hold anything.
            webhook_policy: Arc::new(config.webhooks.address_policy().unwrap_or_default()),
        })
    }

    pub fn with_alert_rules(mut self, rules: crate::alerts::AlertRules) -> AppState {
        self.alert_rules = Arc::new(rules);
        self
    }

    /// Customer messages written by writers that hand their answers' send jobs to the texts
    /// lane ([`crate::jobs::JobHandover`]) instead of leaving them to its next claim.
    pub fn with_text_handover(
        mut self,
        config: &crate::config::Config,
        handover: crate::jobs::JobHandover,
    ) -> AppState {
        self.inbound = crate::storage::InboundWriter::start(
            self.storage.clone(),
            config.database.inbound_writers,
            Some(handover),
        );
        self
    }
}

/// The whole application: `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/api/v1`.
pub fn router(state: AppState, server: &ServerConfig) -> Router {
    let (api, openapi) = split_openapi_router();
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
        .layer(DefaultBodyLimit::max(server.api_body_limit_bytes));
    let openapi_json = openapi
        .to_pretty_json()
        .expect("the OpenAPI document serialises");

    let webhooks = Router::new()
        .route(
            "/webhooks/{channel}/inbound",
            post(webhooks::inbound).fallback(webhooks::not_post),
        )
        .route(
            "/webhooks/{channel}/status",
            post(webhooks::status).fallback(webhooks::not_post),
        )
        .layer(DefaultBodyLimit::max(server.webhook_body_limit_bytes));

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route(
            "/openapi.json",
            get(move || async move { ([("content-type", "application/json")], openapi_json) }),
        )
        .merge(api)
        .merge(webhooks)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(axum::middleware::from_fn(metrics::track_requests))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::internal(&"a request handler panicked").into_response()
                }))
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the request took too long",
                    )
                }))
                .timeout(Duration::from_secs(server.request_timeout_secs)),
        )
        .with_state(state)
}

/// The routes and the finished document: the answers common to every route are added once the
/// routes are in (a modifier on [`api::ApiDoc`] would run before there is any).
fn split_openapi_router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::Modify;
    let (routes, mut document) = openapi_router().split_for_parts();
    api::CommonErrors.modify(&mut document);
    (routes, document)
}

/// The `/api/v1` routes and their OpenAPI document, as served.
fn openapi_router() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(api::ApiDoc::openapi()).nest("/api/v1", api::routes())
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    split_openapi_router().1
}

/// The span of one request: method, route template and request id; never the URI.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %request.method(), route, request_id)
}
