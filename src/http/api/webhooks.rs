//! `/api/v1/webhook-endpoints` and `/api/v1/webhook-deliveries`: where events are pushed, what
//! became of each delivery, and sending again what did not arrive.

use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{ApiJson, ApiQuery};
use crate::storage::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, EndpointRecord, NewEndpoint, StorageError,
};
use crate::time::Timestamp;
use crate::webhooks::{EVENT_TYPES, SigningSecret, unknown_event_types};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
const MAX_URL_CHARS: usize = 2_000;
const DELIVERY_STATES: [&str; 3] = ["pending", "delivered", "dead"];

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointBody {
    #[schema(example = "we_0192f0c4b7a87c31a1f3f9e2d0c4b7a8")]
    pub id: String,
    /// Its name in the configuration (`[webhooks.endpoints.<name>]`); none for API endpoints.
    pub name: Option<String>,
    /// A password and the query's values are masked (`***`): they often hold credentials.
    #[schema(example = "https://crm.example.com/hooks/hearback")]
    pub url: String,
    /// The event types it receives; empty: all of them.
    pub event_types: Vec<String>,
    /// `config` or `api`.
    pub source: String,
    pub created_at: DateTime<Utc>,
    /// Set for a configured endpoint removed from the configuration: it receives nothing more.
    pub disabled_at: Option<DateTime<Utc>>,
}

impl From<EndpointRecord> for EndpointBody {
    fn from(e: EndpointRecord) -> Self {
        EndpointBody {
            id: e.id,
            name: e.name,
            url: crate::webhooks::shown_url(&e.url),
            event_types: e.event_types.0,
            source: e.source,
            created_at: e.created_at.as_datetime(),
            disabled_at: e.disabled_at.map(Timestamp::as_datetime),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    /// An http or https URL. Private, loopback and reserved addresses are refused unless
    /// `webhooks.allow_networks` allows them (names are checked when they are resolved).
    #[schema(example = "https://crm.example.com/hooks/hearback")]
    pub url: String,
    /// The event types to receive; all when left out or empty.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// A Standard Webhooks secret (`whsec_` and the base64 of 24 to 64 bytes); generated when
    /// left out.
    pub secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreated {
    #[serde(flatten)]
    pub endpoint: EndpointBody,
    /// The signing secret: shown here once, give it to the receiver.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptBody {
    pub at: DateTime<Utc>,
    /// The HTTP status, absent when no answer came.
    pub status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl From<AttemptRecord> for AttemptBody {
    fn from(a: AttemptRecord) -> Self {
        AttemptBody {
            at: a.attempted_at.as_datetime(),
            status: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryBody {
    pub id: i64,
    pub endpoint_id: String,
    /// The event's id, also the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event_type: String,
    pub contact_id: Option<String>,
    /// pending, delivered or dead.
    pub state: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every request made, oldest first.
    pub attempts: Vec<AttemptBody>,
}

impl DeliveryBody {
    fn of(d: DeliveryRecord, attempts: Vec<AttemptBody>) -> Self {
        DeliveryBody {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type,
            contact_id: d.contact_id,
            state: d.state,
            next_attempt_at: d.next_attempt_at.map(Timestamp::as_datetime),
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at.as_datetime(),
            delivered_at: d.delivered_at.map(Timestamp::as_datetime),
            attempts,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryBody>,
    /// Pass as `before` for the next (older) page; absent on the last one.
    pub next: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// One endpoint's deliveries.
    pub endpoint: Option<String>,
    /// pending, delivered or dead.
    pub state: Option<String>,
    /// One event type's deliveries.
    pub event_type: Option<String>,
    /// The `next` of the previous page.
    pub before: Option<i64>,
    /// 1 to 500; 50 by default.
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// Dead deliveries created at or after this instant (RFC 3339) are sent again.
    pub since: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayAccepted {
    /// How many dead deliveries are on their way again.
    pub replayed: u64,
}

/// Every endpoint, from the configuration and from the API.
#[utoipa::path(
    get, path = "/webhook-endpoints", tag = "webhooks",
    security(("api_key" = [])),
    responses(
        (status = 200, body = EndpointList),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn list_endpoints(State(state): State<AppState>) -> Result<Json<EndpointList>, ApiError> {
    let endpoints = state.storage.webhook_endpoints().await?;
    Ok(Json(EndpointList {
        endpoints: endpoints.into_iter().map(EndpointBody::from).collect(),
    }))
}

/// Adds an endpoint: every event of the chosen types committed from now on is pushed to it,
/// signed with its secret (Standard Webhooks), each contact's events in order.
#[utoipa::path(
    post, path = "/webhook-endpoints", tag = "webhooks",
    security(("api_key" = [])),
    request_body = CreateEndpointRequest,
    responses(
        (status = 201, body = EndpointCreated),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "A field is invalid (one reason per field)", body = ErrorBody),
    )
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateEndpointRequest>,
) -> Result<(StatusCode, Json<EndpointCreated>), ApiError> {
    let mut problems = Map::new();
    match url::Url::parse(&request.url) {
        _ if request.url.len() > MAX_URL_CHARS => {
            problems.insert(
                "url".into(),
                Value::from(format!("must be at most {MAX_URL_CHARS} characters")),
            );
        }
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            problems.insert("url".into(), Value::from("must be an http or https URL"));
        }
        Ok(url) => {
            if let Err(refused) = state.webhook_policy.check_url(&url) {
                problems.insert("url".into(), Value::from(refused.to_string()));
            }
        }
        Err(e) => {
            problems.insert("url".into(), Value::from(format!("not a URL ({e})")));
        }
    }
    let unknown = unknown_event_types(&request.event_types);
    if !unknown.is_empty() {
        problems.insert(
            "event_types".into(),
            Value::from(format!(
                "unknown event types: {}; known: {}",
                unknown.join(", "),
                EVENT_TYPES.join(", ")
            )),
        );
    }
    let secret = request.secret.unwrap_or_else(SigningSecret::generate);
    if let Err(e) = SigningSecret::parse(&secret) {
        problems.insert("secret".into(), Value::from(e.to_string()));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    let mut event_types = request.event_types;
    event_types.sort();
    event_types.dedup();
    let endpoint = state
        .storage
        .create_webhook_endpoint(
            &NewEndpoint {
                url: request.url,
                secret: secret.clone(),
                event_types,
            },
            Timestamp::now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointCreated {
            endpoint: endpoint.into(),
            secret,
        }),
    ))
}

/// Sends an endpoint's dead deliveries again, each contact's in their order.
#[utoipa::path(
    post, path = "/webhook-endpoints/{id}/replay", tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id"), ReplayParams),
    responses(
        (status = 202, body = ReplayAccepted),
        (status = 400, description = "`since` is missing or not an RFC 3339 instant", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn replay_endpoint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ReplayParams>,
) -> Result<(StatusCode, Json<ReplayAccepted>), ApiError> {
    if state.storage.webhook_endpoint(&id).await?.is_none() {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    let replayed = state
        .storage
        .replay_dead_deliveries(
            &id,
            Timestamp::from_datetime(params.since),
            Timestamp::now(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayAccepted { replayed })))
}

/// Deliveries, newest first, with every attempt and its error.
#[utoipa::path(
    get, path = "/webhook-deliveries", tag = "webhooks",
    security(("api_key" = [])),
    params(DeliveryParams),
    responses(
        (status = 200, body = DeliveryList),
        (status = 400, description = "A parameter has the wrong type", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "A filter is invalid", body = ErrorBody),
    )
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryList>, ApiError> {
    let mut problems = Map::new();
    super::checks::one_of(
        &mut problems,
        "state",
        params.state.as_deref(),
        &DELIVERY_STATES,
    );
    super::checks::one_of(
        &mut problems,
        "event_type",
        params.event_type.as_deref(),
        &EVENT_TYPES,
    );
    super::checks::page_limit(&mut problems, params.limit, MAX_PAGE);
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    let mut deliveries = state
        .storage
        .webhook_deliveries(&DeliveryFilter {
            endpoint_id: params.endpoint,
            state: params.state,
            event_type: params.event_type,
            before: params.before,
            // One more than asked tells whether there is a next page.
            limit: limit + 1,
        })
        .await?;
    let next = (deliveries.len() > limit as usize).then(|| {
        deliveries.truncate(limit as usize);
        deliveries.last().map_or(0, |d| d.id)
    });
    Ok(Json(DeliveryList {
        deliveries: with_attempts(&state, deliveries).await?,
        next,
    }))
}

/// Sends one delivery again at once, whatever became of it (a delivered one too: the receiver
/// de-duplicates on `webhook-id`).
#[utoipa::path(
    post, path = "/webhook-deliveries/{id}/retry", tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 202, body = DeliveryBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "The delivery is pending: it is on its way already", body = ErrorBody),
    )
)]
pub async fn retry_delivery(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryBody>), ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::from(StorageError::NotFound("webhook delivery")))?;
    state
        .storage
        .retry_webhook_delivery(id, Timestamp::now())
        .await?;
    let delivery = state
        .storage
        .webhook_delivery(id)
        .await?
        .ok_or(StorageError::NotFound("webhook delivery"))?;
    let mut bodies = with_attempts(&state, vec![delivery]).await?;
    Ok((StatusCode::ACCEPTED, Json(bodies.remove(0))))
}

async fn with_attempts(
    state: &AppState,
    deliveries: Vec<DeliveryRecord>,
) -> Result<Vec<DeliveryBody>, ApiError> {
    let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
    let mut attempts: std::collections::HashMap<i64, Vec<AttemptBody>> =
        std::collections::HashMap::new();
    for attempt in state.storage.webhook_attempts(&ids).await? {
        attempts
            .entry(attempt.delivery_id)
            .or_default()
            .push(attempt.into());
    }
    Ok(deliveries
        .into_iter()
        .map(|d| {
            let mine = attempts.remove(&d.id).unwrap_or_default();
            DeliveryBody::of(d, mine)
        })
        .collect())
}
