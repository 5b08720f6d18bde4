//! `POST /api/v1/invitations`, `GET /api/v1/invitations`, `GET /api/v1/invitations/{id}`: one
//! customer event in (checked by [`crate::intake`], its survey started at its planned send
//! time), and the invitations listed and exported.
//!
//! Idempotent on the event id per integration (API key): the same request again answers with
//! the invitation it made the first time and sends nothing; the same event id with another
//! payload is a 409.

use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::export::{Page, accepts, csv_lines, paged_download};
use crate::http::json::ApiJson;
use crate::http::json::ApiQuery;
pub use crate::intake::CreateInvitationRequest;
use crate::intake::UnitIds;
use crate::storage::{
    InvitationFilter, InvitationListRow, InvitationOutcome, InvitationRecord, Storage, StorageError,
};
use crate::time::Timestamp;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationBody {
    pub id: String,
    pub event_id: String,
    pub flow: String,
    pub channel: Option<String>,
    /// `scheduled`, `held` (by an SMS-pumping guard: `contact_daily_cap`, `unit_spend_cap`),
    /// `sent`, `failed`, or `declined` (with a reason: `opted_out`, `open_case` — the customer
    /// has a case that is not closed —, `open_conversation`, `frequency_cap`, `quota_reached`).
    pub status: String,
    pub status_reason: Option<String>,
    /// When the first message goes out: the flow's delay after the event, inside the sending
    /// window in the customer's local time.
    pub send_at: Option<DateTime<Utc>>,
    /// The survey's conversation, once it has started: at once when its first message is due
    /// now, at `send_at` otherwise (until then the invitation holds no conversation).
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

/// Plans a survey: it starts, and its first question goes out, the flow's delay after the
/// event, inside the sending window in the customer's local time.
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

/// Invitations per page of JSON, and per database read of a CSV export.
const MAX_PAGE: u32 = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `scheduled`, `held` (by an SMS-pumping guard), `sent`, `failed`, `declined`, `cancelled`:
    /// `failed` lists the numbers to clean up (with `status_reason` and the contact's
    /// `number_status`).
    pub status: Option<String>,
    /// A unit's code: its invitations and those of every unit below it.
    pub unit: Option<String>,
    /// A flow's id.
    pub flow: Option<String>,
    /// Created at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1 to 1000, default 100 (JSON only: a CSV export holds every match).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationListItem {
    pub id: String,
    pub event_id: String,
    pub flow: String,
    pub unit: Option<String>,
    /// The customer's number, E.164.
    pub phone: String,
    /// What providers said about the number: `ok`, `invalid`, `landline`, `unreachable`.
    pub number_status: String,
    pub channel: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub send_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<InvitationListRow> for InvitationListItem {
    fn from(row: InvitationListRow) -> Self {
        InvitationListItem {
            id: row.id,
            event_id: row.event_id,
            flow: row.flow_id,
            unit: row.unit,
            phone: row.phone,
            number_status: row.number_status,
            channel: row.channel,
            status: row.status,
            status_reason: row.status_reason,
            send_at: row.send_at.map(Timestamp::as_datetime),
            created_at: row.created_at.as_datetime(),
            updated_at: row.updated_at.as_datetime(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    pub invitations: Vec<InvitationListItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

const STATUSES: [&str; 6] = [
    "scheduled",
    "held",
    "sent",
    "failed",
    "declined",
    "cancelled",
];

fn filter_of(params: &ListParams) -> Result<InvitationFilter, ApiError> {
    let mut problems = Map::new();
    super::checks::one_of(&mut problems, "status", params.status.as_deref(), &STATUSES);
    super::checks::page_limit(&mut problems, params.limit, MAX_PAGE);
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    Ok(InvitationFilter {
        status: params.status.clone(),
        unit: params.unit.clone(),
        flow: params.flow.clone(),
        from: params.from.map(Timestamp::from_datetime),
        until: params.to.map(Timestamp::from_datetime),
    })
}

/// Lists invitations, oldest first: JSON a page at a time, or with `Accept: text/csv` every
/// match as one streamed CSV file (for example `?status=failed`, the numbers to clean up).
#[utoipa::path(
    get, path = "/invitations", tag = "invitations",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page (JSON), or every match (`Accept: text/csv`)",
         content((InvitationList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A query parameter that cannot be read", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "Invalid status, unit or limit", body = ErrorBody),
    )
)]
pub async fn list_invitations(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let filter = filter_of(&params)?;
    super::units::require_known_unit(&state.storage, filter.unit.as_deref()).await?;
    if accepts(&headers, "text/csv") {
        return Ok(csv_export(state.storage.clone(), filter, params.cursor));
    }
    let limit = params.limit.unwrap_or(100);
    let rows = state
        .storage
        .list_invitations(&filter, params.cursor.as_deref(), limit)
        .await?;
    let next_cursor = (rows.len() as u64 == u64::from(limit))
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(InvitationList {
        invitations: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    })
    .into_response())
}

const CSV_COLUMNS: [&str; 12] = [
    "id",
    "event_id",
    "flow",
    "unit",
    "phone",
    "number_status",
    "channel",
    "status",
    "status_reason",
    "send_at",
    "created_at",
    "updated_at",
];

/// Every matching invitation as CSV, read a page at a time while it is sent.
fn csv_export(storage: Storage, filter: InvitationFilter, cursor: Option<String>) -> Response {
    paged_download(
        "text/csv; charset=utf-8",
        "invitations.csv",
        "invitations",
        csv_lines([CSV_COLUMNS]),
        cursor,
        move |cursor| {
            let (storage, filter) = (storage.clone(), filter.clone());
            async move {
                let rows = storage
                    .list_invitations(&filter, cursor.as_deref(), MAX_PAGE)
                    .await?;
                let full = rows.len() as u64 == u64::from(MAX_PAGE);
                let next = rows.last().filter(|_| full).map(|r| r.id.clone());
                Ok::<Page, StorageError>(
                    (!rows.is_empty()).then(|| (csv_lines(rows.into_iter().map(csv_cells)), next)),
                )
            }
        },
    )
}

fn csv_cells(row: InvitationListRow) -> [String; 12] {
    let time = |t: Timestamp| t.as_datetime().to_rfc3339();
    [
        row.id,
        crate::import::spreadsheet_safe(row.event_id),
        row.flow_id,
        row.unit.unwrap_or_default(),
        // Validated E.164: digits after a '+', never a formula.
        row.phone,
        row.number_status,
        row.channel.unwrap_or_default(),
        row.status,
        row.status_reason.unwrap_or_default(),
        row.send_at.map(time).unwrap_or_default(),
        time(row.created_at),
        time(row.updated_at),
    ]
}
