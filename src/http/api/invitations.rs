//! `POST /api/v1/invitations`, `GET /api/v1/invitations/{id}`: one customer event in, the first
//! question queued at once (scheduling arrives with the dispatch feature).
//!
//! Idempotent on the event id per integration (API key): the same request again answers with
//! the invitation it made the first time and sends nothing; the same event id with another
//! payload is a 409.

use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::ApiJson;
pub use crate::intake::CreateInvitationRequest;
use crate::intake::UnitIds;
use crate::storage::{InvitationOutcome, InvitationRecord};
use crate::time::Timestamp;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationBody {
    pub id: String,
    pub event_id: String,
    pub flow: String,
    pub channel: Option<String>,
    /// `scheduled`, `sent`, `failed`, or `declined` (with a reason: `opted_out`,
    /// `open_conversation`, `frequency_cap`, `quota_reached`).
    pub status: String,
    pub status_reason: Option<String>,
    /// When the first message goes out: the flow's delay after the event, inside the sending
    /// window in the customer's local time.
    pub send_at: Option<DateTime<Utc>>,
    pub conversation_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<InvitationRecord> for InvitationBody {
    fn from(record: InvitationRecord) -> Self {
        InvitationBody {
            id: record.id,
            event_id: record.event_id,
            flow: record.flow_id,
            channel: record.channel,
            status: record.status,
            status_reason: record.status_reason,
            send_at: record.send_at.map(Timestamp::as_datetime),
            conversation_id: record.conversation_id,
            created_at: record.created_at.as_datetime(),
        }
    }
}

/// Starts a survey: the first question is queued at once.
#[utoipa::path(
    post, path = "/invitations", tag = "invitations",
    security(("api_key" = [])),
    request_body = CreateInvitationRequest,
    responses(
        (status = 202, description = "Accepted, or the same event again: the invitation", body = InvitationBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "This event id was used with another payload", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid fields, with a reason per field", body = ErrorBody),
    )
)]
pub async fn create_invitation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CreateInvitationRequest>,
) -> Result<(StatusCode, Json<InvitationBody>), ApiError> {
    let units = match request.unit.as_deref() {
        None => UnitIds::new(),
        Some(code) => state
            .storage
            .unit_id(code.trim())
            .await?
            .map(|id| (code.trim().to_string(), id))
            .into_iter()
            .collect(),
    };
    let new = state
        .intake
        .prepare(&caller.key_id, &request, &units, Timestamp::now())
        .map_err(|problems| {
            ApiError::invalid_fields(
                problems
                    .into_iter()
                    .map(|p| (p.field, Value::from(p.message)))
                    .collect(),
            )
        })?;
    let outcome = state.storage.start_invitation(&new).await?;
    let record = match outcome {
        InvitationOutcome::Created(record) | InvitationOutcome::Existing(record) => record,
    };
    Ok((StatusCode::ACCEPTED, Json(record.into())))
}

/// One invitation.
#[utoipa::path(
    get, path = "/invitations/{id}", tag = "invitations",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The invitation's id")),
    responses(
        (status = 200, body = InvitationBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn get_invitation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<InvitationBody>, ApiError> {
    let record = state
        .storage
        .invitation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    Ok(Json(record.into()))
}
