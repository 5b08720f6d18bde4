//! `/api/v1/contacts/{phone}`: one customer's card, and their erasure.
//!
//! The number in the path is read like every number hearback takes in (international, or
//! national in `dispatch.default_region`); written with its `+`, it may be sent as is or as
//! `%2B`. The path of these requests is never logged (spans carry the route template).

use crate::http::AppState;
use crate::http::api::cases::HistoryEntry;
use crate::http::auth::{AuditTarget, Caller};
use crate::http::error::{ApiError, ErrorBody};
use crate::phone::Phone;
use crate::storage::{Actor, CardMessage, ContactCard};
use crate::time::Timestamp;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactBody {
    pub id: String,
    /// E.164.
    #[schema(example = "+33612345678")]
    pub phone: String,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    /// ok, or what a provider said about the number: invalid, landline, unreachable.
    pub number_status: String,
    pub opted_out: bool,
    pub opted_out_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentEntry {
    /// opted_out or opted_in.
    pub change: String,
    /// `sms:<channel>` for a keyword, `blocked_number` for a number erased after it opted out.
    pub source: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardInvitationBody {
    pub id: String,
    /// The integration that sent it (its API key id, or an import's source).
    pub source: String,
    pub event_id: String,
    pub flow: String,
    pub unit: Option<String>,
    pub channel: Option<String>,
    pub locale: Option<String>,
    #[schema(value_type = Object)]
    pub variables: Value,
    /// scheduled, held, sent, failed, declined or cancelled.
    pub status: String,
    pub status_reason: Option<String>,
    pub send_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardMessageBody {
    pub id: String,
    /// inbound (the customer) or outbound.
    pub direction: String,
    pub channel: String,
    pub text: String,
    /// received, or the delivery status of a text sent.
    pub status: String,
    /// survey, opt_out_confirmation, opt_in_confirmation, help; none for a customer's text or
    /// an agent's.
    pub purpose: Option<String>,
    pub error_code: Option<String>,
    pub case_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardAnswerBody {
    pub question: String,
    /// nps, csat, ces, yesno, choice or text.
    pub kind: String,
    pub score: Option<i32>,
    pub choice: Option<String>,
    pub text: Option<String>,
    pub message_id: Option<String>,
    pub answered_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardConversationBody {
    pub id: String,
    pub invitation_id: String,
    pub flow: String,
    pub channel: String,
    /// Our number the customer talks to.
    pub sender: String,
    /// open, completed or expired.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Both directions, oldest first.
    pub messages: Vec<CardMessageBody>,
    pub answers: Vec<CardAnswerBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardCaseBody {
    pub id: String,
    /// open, in_progress, resolved or closed.
    pub status: String,
    pub outcome: Option<String>,
    pub priority: String,
    pub rule: String,
    pub conversation_id: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Every change and message of the case, in order.
    pub events: Vec<HistoryEntry>,
}

/// Everything hearback knows about one customer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactCardBody {
    pub contact: ContactBody,
    /// Opt-outs and opt-ins, oldest first.
    pub consents: Vec<ConsentEntry>,
    pub invitations: Vec<CardInvitationBody>,
    pub conversations: Vec<CardConversationBody>,
    /// Texts outside any survey (keywords and their answers, case threads), oldest first.
    pub other_messages: Vec<CardMessageBody>,
    pub cases: Vec<CardCaseBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasedBody {
    /// The erased contact's id, as in its `contact.erased` event.
    pub contact_id: String,
    /// Whether the number stays blocked: it had opted out, and a new invitation or text for it
    /// starts opted out.
    pub blocked: bool,
}

fn at(t: Timestamp) -> DateTime<Utc> {
    t.as_datetime()
}

fn message_body(m: CardMessage) -> CardMessageBody {
    CardMessageBody {
        id: m.id,
        direction: m.direction,
        channel: m.channel,
        text: m.body,
        status: m.status,
        purpose: m.purpose,
        error_code: m.error_code,
        case_id: m.case_id,
        at: at(m.created_at),
    }
}

impl From<ContactCard> for ContactCardBody {
    fn from(card: ContactCard) -> Self {
        let c = card.contact;
        ContactCardBody {
            contact: ContactBody {
                id: c.id,
                phone: c.phone,
                locale: c.locale,
                time_zone: c.time_zone,
                number_status: c.number_status,
                opted_out: c.opted_out_at.is_some(),
                opted_out_at: c.opted_out_at.map(at),
                created_at: at(c.created_at),
            },
            consents: card
                .consents
                .into_iter()
                .map(|r| ConsentEntry {
                    change: r.change,
                    source: r.source,
                    at: at(r.at),
                })
                .collect(),
            invitations: card
                .invitations
                .into_iter()
                .map(|i| CardInvitationBody {
                    id: i.id,
                    source: i.source,
                    event_id: i.event_id,
                    flow: i.flow_id,
                    unit: i.unit_code,
                    channel: i.channel,
                    locale: i.locale,
                    variables: i.variables.0,
                    status: i.status,
                    status_reason: i.status_reason,
                    send_at: i.send_at.map(at),
                    created_at: at(i.created_at),
                })
                .collect(),
            conversations: card
                .conversations
                .into_iter()
                .map(|c| CardConversationBody {
                    id: c.conversation.id,
                    invitation_id: c.conversation.invitation_id,
                    flow: c.conversation.flow_id,
                    channel: c.conversation.channel,
                    sender: c.conversation.sender,
                    status: c.conversation.status,
                    started_at: at(c.conversation.started_at),
                    closed_at: c.conversation.closed_at.map(at),
                    messages: c.messages.into_iter().map(message_body).collect(),
                    answers: c
                        .answers
                        .into_iter()
                        .map(|a| CardAnswerBody {
                            question: a.question_id,
                            kind: a.kind,
                            score: a.score,
                            choice: a.choice,
                            text: a.text,
                            message_id: a.message_id,
                            answered_at: at(a.answered_at),
                        })
                        .collect(),
                })
                .collect(),
            other_messages: card.other_messages.into_iter().map(message_body).collect(),
            cases: card
                .cases
                .into_iter()
                .map(|k| CardCaseBody {
                    id: k.case.id,
                    status: k.case.status,
                    outcome: k.case.outcome,
                    priority: k.case.priority,
                    rule: k.case.rule_id,
                    conversation_id: k.case.conversation_id,
                    opened_at: at(k.case.opened_at),
                    closed_at: k.case.closed_at.map(at),
                    events: k.events.into_iter().map(HistoryEntry::from).collect(),
                })
                .collect(),
        }
    }
}

/// The number in the path, or a 422 naming what is wrong with it (never echoing it).
fn parse_phone(state: &AppState, raw: &str) -> Result<Phone, ApiError> {
    Phone::parse(raw, state.intake.default_region).map_err(|e| {
        let mut problems = Map::new();
        problems.insert("phone".into(), Value::from(e.to_string()));
        ApiError::invalid_fields(problems)
    })
}

/// Everything known about one customer: their contact record, opt-out history, invitations
/// (with their variables), conversations with every message in both directions and the
/// answers, texts outside surveys, and cases with their history.
#[utoipa::path(
    get, path = "/contacts/{phone}", tag = "contacts",
    security(("api_key" = [])),
    params(("phone" = String, Path, description = "The customer's number: E.164 (`+33612345678`, `%2B33612345678`) or national in `dispatch.default_region`")),
    responses(
        (status = 200, body = ContactCardBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such customer, or erased", body = ErrorBody),
        (status = 422, description = "Not a phone number", body = ErrorBody),
    )
)]
pub async fn get_contact(
    State(state): State<AppState>,
    Path(phone): Path<String>,
) -> Result<(Extension<AuditTarget>, Json<ContactCardBody>), ApiError> {
    let phone = parse_phone(&state, &phone)?;
    let card = state
        .storage
        .contact_card(&phone)
        .await?
        .ok_or_else(|| ApiError::not_found("contact"))?;
    // The audit log names whose card was read by the contact's id, not the number.
    let body = ContactCardBody::from(card);
    Ok((Extension(AuditTarget(body.contact.id.clone())), Json(body)))
}

/// Erases a customer (GDPR): their number, locale and time zone, every text to and from them,
/// free-text answers, invitation variables, case details and their events in the outbox are
/// removed or overwritten in one transaction; scores, choices and statuses stay, without
/// identity, so aggregates do not move. A survey still running ends, a case still open closes.
/// A number that had opted out stays blocked (kept as a keyed hash only). Emits
/// `contact.erased` (data: the contact id) and records the erasure in the audit log.
#[utoipa::path(
    delete, path = "/contacts/{phone}", tag = "contacts",
    security(("api_key" = [])),
    params(("phone" = String, Path, description = "The customer's number: E.164 (`+33612345678`, `%2B33612345678`) or national in `dispatch.default_region`")),
    responses(
        (status = 200, body = ErasedBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such customer, or erased already", body = ErrorBody),
        (status = 422, description = "Not a phone number", body = ErrorBody),
    )
)]
pub async fn erase_contact(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(phone): Path<String>,
) -> Result<(Extension<AuditTarget>, Json<ErasedBody>), ApiError> {
    let phone = parse_phone(&state, &phone)?;
    let (contact_id, blocked) = state
        .storage
        .erase_contact(&phone, &Actor::ApiKey(caller.key_id), Timestamp::now())
        .await?;
    tracing::info!(contact = %contact_id, blocked, "contact erased");
    Ok((
        Extension(AuditTarget(contact_id.clone())),
        Json(ErasedBody {
            contact_id,
            blocked,
        }),
    ))
}
