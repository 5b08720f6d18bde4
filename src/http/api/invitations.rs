//! `POST /api/v1/invitations`, `GET /api/v1/invitations/{id}`: one customer event in, the first
//! question queued at once (scheduling arrives with the dispatch feature).
//!
//! Idempotent on the event id per integration (API key): the same request again answers with
//! the invitation it made the first time and sends nothing; the same event id with another
//! payload is a 409.

use crate::config::ChannelConfig;
use crate::conversation::{self, ConversationIds};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::ApiJson;
use crate::phone::Phone;
use crate::storage::{InvitationOutcome, InvitationRecord, NewInvitation};
use crate::time::Timestamp;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use utoipa::ToSchema;

const MAX_EVENT_ID_CHARS: usize = 200;
const MAX_VARIABLE_CHARS: usize = 500;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitationRequest {
    /// Your id of the event (order, call, repair); the same id twice is one invitation.
    #[schema(example = "order-123")]
    pub event_id: String,
    /// The flow's id (its file name in `flows/`).
    #[schema(example = "delivery")]
    pub flow: String,
    /// The customer's mobile number, international format.
    #[schema(example = "+33612345678")]
    pub phone: String,
    /// The customer's locale; the conversation uses its language when the flow has it.
    #[schema(example = "fr-FR")]
    pub locale: Option<String>,
    /// Values for the flow's `{{variables}}`: strings, numbers or booleans.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"first_name": "Ana", "store": "Lyon 2", "order_date": "12/11"}))]
    pub variables: BTreeMap<String, Value>,
    /// The channel to send through; by default the first channel, in name order, that serves the
    /// number's country.
    pub channel: Option<String>,
    /// When the event happened (RFC 3339, with its offset); now by default. The survey goes out
    /// the flow's delay after it, at the first moment inside the sending window in the
    /// customer's local time. At most a year from now either way.
    #[schema(example = "2026-11-28T21:30:00+01:00")]
    pub event_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationBody {
    pub id: String,
    pub event_id: String,
    pub flow: String,
    pub channel: Option<String>,
    /// `scheduled`, `sent`, `failed`, or `declined` (with a reason: `opted_out`,
    /// `open_conversation`, `frequency_cap`).
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

/// A request whose every field checked out.
struct Checked<'a> {
    phone: Phone,
    variables: BTreeMap<String, String>,
    channel: String,
    sender: String,
    flow: &'a crate::flow::Flow,
}

fn check<'a>(
    request: &CreateInvitationRequest,
    state: &'a AppState,
) -> Result<Checked<'a>, ApiError> {
    let mut problems = Map::new();
    let mut problem = |field: &str, reason: String| {
        problems.insert(field.to_string(), Value::from(reason));
    };
    let event_id = request.event_id.trim();
    if event_id.is_empty() || event_id.chars().count() > MAX_EVENT_ID_CHARS {
        problem(
            "event_id",
            format!("must be 1 to {MAX_EVENT_ID_CHARS} characters"),
        );
    }
    let flow = state.flows.get(&request.flow);
    if flow.is_none() {
        problem("flow", format!("no flow '{}' is loaded", request.flow));
    }
    let phone = Phone::parse(&request.phone, None)
        .map_err(|e| {
            problem(
                "phone",
                format!("{e}; give it in international format (+33…)"),
            )
        })
        .ok();
    if let Some(locale) = &request.locale {
        if locale.is_empty() || locale.len() > 35 {
            problem("locale", "must be a locale such as fr-FR".into());
        }
    }
    let mut variables = BTreeMap::new();
    for (name, value) in &request.variables {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                problem(
                    &format!("variables.{name}"),
                    "must be a string, a number or a boolean".into(),
                );
                continue;
            }
        };
        if text.chars().count() > MAX_VARIABLE_CHARS {
            problem(
                &format!("variables.{name}"),
                format!("must be at most {MAX_VARIABLE_CHARS} characters"),
            );
        }
        variables.insert(name.clone(), text);
    }
    if let Some(flow) = flow {
        for name in &flow.variables {
            if !variables.contains_key(name) {
                problem(
                    &format!("variables.{name}"),
                    format!("the flow '{}' needs it", flow.id),
                );
            }
        }
    }
    let route =
        phone.as_ref().and_then(
            |phone| match route(request.channel.as_deref(), phone, state) {
                Ok(route) => Some(route),
                Err(reason) => {
                    problem("channel", reason);
                    None
                }
            },
        );
    match (flow, phone, route) {
        (Some(flow), Some(phone), Some((channel, sender))) if problems.is_empty() => Ok(Checked {
            phone,
            variables,
            channel,
            sender,
            flow,
        }),
        _ => Err(ApiError::invalid_fields(problems)),
    }
}

/// The channel and the sender number a conversation uses: the one asked for, or the first
/// channel that serves the number's country; its first sender that can receive replies.
/// How far from now an event time may be.
const EVENT_TIME_RANGE_DAYS: i64 = 366;

/// When the invitation's first message goes out; a 422 when the event time is out of range or
/// the flow's window never opens for this number.
fn plan_send(
    request: &CreateInvitationRequest,
    checked: &Checked<'_>,
    state: &AppState,
    now: Timestamp,
) -> Result<Timestamp, ApiError> {
    let field = |field: &str, reason: String| {
        let mut problems = Map::new();
        problems.insert(field.to_string(), Value::from(reason));
        ApiError::invalid_fields(problems)
    };
    let now = now.as_datetime();
    let event_at = request.event_time.unwrap_or(now);
    if (event_at - now).num_days().abs() >= EVENT_TIME_RANGE_DAYS {
        return Err(field(
            "event_time",
            format!("must be within {EVENT_TIME_RANGE_DAYS} days of now"),
        ));
    }
    let Some(scheduling) = &state.scheduling else {
        // `dispatch.immediate`: development and tests.
        return Ok(Timestamp::from_datetime(now));
    };
    let dispatch = &checked.flow.dispatch;
    scheduling
        .planned_send(
            event_at,
            dispatch.delay,
            now,
            checked.phone.country().as_deref(),
            dispatch.window.as_ref(),
        )
        .map(Timestamp::from_datetime)
        .ok_or_else(|| {
            field(
                "flow",
                format!(
                    "the sending window of flow '{}' never opens for this number",
                    checked.flow.id
                ),
            )
        })
}

/// The frequency cap for this flow: a contact with a survey due in the returned span (this
/// survey's send time, give or take the cap's days) is not surveyed again; `None` without a cap.
fn frequency_cap(
    flow: &crate::flow::Flow,
    state: &AppState,
    send_at: Timestamp,
) -> Option<(Timestamp, Timestamp)> {
    // Past ten years a cap means the same; bounded, the dates stay representable.
    let days = flow
        .dispatch
        .frequency_cap_days
        .unwrap_or(state.frequency_cap_days)
        .min(3_660);
    let span = chrono::Duration::days(i64::from(days));
    let at = send_at.as_datetime();
    (days > 0).then(|| {
        (
            Timestamp::from_datetime(at - span),
            Timestamp::from_datetime(at + span),
        )
    })
}

/// When a customer who has not answered is reminded: the flow's `reminder.after` past the first
/// message, inside the window; none when the flow has no reminder or it would come after the
/// expiry.
fn plan_reminder(
    checked: &Checked<'_>,
    state: &AppState,
    send_at: Timestamp,
    expires_at: Timestamp,
    now: Timestamp,
) -> Option<Timestamp> {
    let dispatch = &checked.flow.dispatch;
    let after = dispatch.reminder.as_ref()?.after;
    let at = match &state.scheduling {
        None => send_at + after,
        Some(scheduling) => Timestamp::from_datetime(scheduling.planned_send(
            send_at.as_datetime(),
            after,
            now.as_datetime(),
            checked.phone.country().as_deref(),
            dispatch.window.as_ref(),
        )?),
    };
    (at < expires_at).then_some(at)
}

fn route(asked: Option<&str>, phone: &Phone, state: &AppState) -> Result<(String, String), String> {
    let country = phone.country();
    let serves = |config: &ChannelConfig| {
        let countries = config.common().countries;
        countries.is_empty()
            || country
                .as_deref()
                .is_some_and(|c| countries.iter().any(|served| served.as_str() == c))
    };
    let (name, config) = match asked {
        Some(name) => {
            let config = state
                .channel_configs
                .get(name)
                .ok_or_else(|| format!("no channel '{name}' is configured"))?;
            if !serves(config) {
                return Err(format!(
                    "the channel '{name}' does not serve this number's country"
                ));
            }
            (name.to_string(), config)
        }
        None => state
            .channel_configs
            .iter()
            .find(|(_, config)| serves(config))
            .map(|(name, config)| (name.clone(), config))
            .ok_or_else(|| "no configured channel serves this number's country".to_string())?,
    };
    let senders = config.common().senders;
    if senders.is_empty() {
        // A channel without senders (the console) answers from its own name.
        return Ok((name.clone(), name));
    }
    senders
        .iter()
        .find(|s| s.receives_replies())
        .map(|s| (name.clone(), s.as_str().to_string()))
        .ok_or_else(|| {
            format!(
                "the channel '{name}' sends only from alphanumeric sender IDs, which cannot receive \
                 the answers this flow asks for"
            )
        })
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
    let checked = check(&request, &state)?;
    let payload_hash: [u8; 32] =
        Sha256::digest(serde_json::to_vec(&request).expect("a request serialises")).into();
    let now = Timestamp::now();
    let send_at = plan_send(&request, &checked, &state, now)?;
    let expires_at = send_at + checked.flow.dispatch.expire_after;
    let remind_at = plan_reminder(&checked, &state, send_at, expires_at, now);
    let lang = conversation::language(checked.flow, request.locale.as_deref());
    // The ids in the opening's events are settled by storage; the opening raises none.
    let opening = conversation::opening(
        checked.flow,
        lang,
        checked.variables,
        &ConversationIds {
            conversation_id: "",
            invitation_id: "",
            event_id: &request.event_id,
            contact_id: "",
        },
        now,
    );
    let variables = serde_json::to_value(&request.variables).expect("variables serialise");
    let outcome = state
        .storage
        .start_invitation(&NewInvitation {
            source: &caller.key_id,
            event_id: request.event_id.trim(),
            payload_hash,
            flow_id: &checked.flow.id,
            phone: &checked.phone,
            locale: request.locale.as_deref(),
            variables: &variables,
            channel: &checked.channel,
            sender: &checked.sender,
            opening,
            send_max_attempts: state.send_max_attempts,
            send_at,
            expires_at,
            remind_at,
            surveyed_within: frequency_cap(checked.flow, &state, send_at),
            now,
        })
        .await?;
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
