//! `/api/v1/cases`: unhappy customers' cases, their history and their SMS thread.
//!
//! A user's key sees and changes the cases of the user's unit and its sub-units (an admin's,
//! every case); an integration's key acts for the whole organisation. A case out of the
//! caller's scope is answered 404, as one that does not exist.

use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{ApiJson, ApiQuery};
use crate::storage::{
    CaseEventRecord, CaseFilter, CaseRecord, CaseScope, CaseText, Resolution, ThreadMessage,
};
use crate::time::Timestamp;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

const MAX_TEXT_CHARS: usize = 1_000;
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
const OUTCOMES: [&str; 4] = ["solved", "not_solved", "unreachable", "no_action_needed"];
const STATUSES: [&str; 4] = ["open", "in_progress", "resolved", "closed"];

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseBody {
    #[schema(example = "case_0192f0c4b7a87c31a1f3f9e2d0c4b7a8")]
    pub id: String,
    /// open, in_progress, resolved or closed.
    pub status: String,
    /// solved, not_solved, unreachable or no_action_needed, once resolved.
    pub outcome: Option<String>,
    /// low, normal, high or urgent.
    pub priority: String,
    /// The alert rule that opened it.
    pub rule: String,
    pub unit: Option<String>,
    /// The customer's number (E.164).
    pub phone: String,
    pub contact_id: String,
    /// The survey that raised the alert.
    pub conversation_id: Option<String>,
    pub channel: String,
    /// Our number the thread's texts go from.
    pub sender: String,
    pub assignee: Option<String>,
    /// Taken (assigned, or answered) by then, or escalated.
    pub sla_due_at: DateTime<Utc>,
    pub overdue: bool,
    pub escalated_at: Option<DateTime<Utc>>,
    /// The recovery question: asked, then yes or no.
    pub follow_up: Option<String>,
    pub customer_wrote_at: Option<DateTime<Utc>>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl CaseBody {
    fn of(case: CaseRecord, now: Timestamp) -> CaseBody {
        CaseBody {
            overdue: case.status == "open" && case.sla_due_at < now,
            id: case.id,
            status: case.status,
            outcome: case.outcome,
            priority: case.priority,
            rule: case.rule_id,
            unit: case.unit_code,
            phone: case.phone,
            contact_id: case.contact_id,
            conversation_id: case.conversation_id,
            channel: case.channel,
            sender: case.sender,
            assignee: case.assignee_email,
            sla_due_at: case.sla_due_at.as_datetime(),
            escalated_at: case.escalated_at.map(Timestamp::as_datetime),
            follow_up: case.follow_up,
            customer_wrote_at: case.customer_wrote_at.map(Timestamp::as_datetime),
            opened_at: case.opened_at.as_datetime(),
            updated_at: case.updated_at.as_datetime(),
            resolved_at: case.resolved_at.map(Timestamp::as_datetime),
            closed_at: case.closed_at.map(Timestamp::as_datetime),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseList {
    pub cases: Vec<CaseBody>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// `system`, `customer`, `user:<email>` or `api_key:<name>`.
    pub actor: String,
    /// opened, alert, assigned, message_in, message_out, escalated, resolved, follow_up, closed.
    pub kind: String,
    pub message_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadEntry {
    pub id: String,
    /// inbound (the customer) or outbound (an agent, the recovery question).
    pub direction: String,
    pub text: String,
    /// received, or the delivery status of a text sent: queued, sending, sent, delivered, failed_…
    pub status: String,
    pub error_code: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: CaseBody,
    /// Every change and message, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The customer's texts since the case opened and the texts sent to them, oldest first.
    pub thread: Vec<ThreadEntry>,
}

impl From<CaseEventRecord> for HistoryEntry {
    fn from(e: CaseEventRecord) -> Self {
        HistoryEntry {
            at: e.at.as_datetime(),
            actor: e.actor,
            kind: e.kind,
            message_id: e.message_id,
            details: e.details.0,
        }
    }
}

impl From<ThreadMessage> for ThreadEntry {
    fn from(m: ThreadMessage) -> Self {
        ThreadEntry {
            id: m.id,
            direction: m.direction,
            text: m.body,
            status: m.status,
            error_code: m.error_code,
            at: m.created_at.as_datetime(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// open, in_progress, resolved or closed.
    pub status: Option<String>,
    /// Only open cases past their SLA.
    pub overdue: Option<bool>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// 1 to 500; 50 by default.
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseMessageRequest {
    /// 1 to 1 000 characters, sent as an SMS from the number the customer talks to.
    #[schema(
        example = "Bonjour, je suis Léa du magasin Lyon 2. Pouvez-vous me dire ce qui s'est passé ?"
    )]
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseMessageAccepted {
    pub message_id: String,
    /// queued: it goes out at once, or when the sending window opens.
    pub status: String,
    /// True when the customer has not written within `cases.reply_window`: the text waits for
    /// the sending window.
    pub waits_for_window: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// The e-mail of the user who takes the case; a user's key may leave it out to take it
    /// themselves.
    pub user: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// solved, not_solved, unreachable or no_action_needed.
    pub outcome: String,
    /// Text the recovery question ("Avons-nous réglé votre problème ? OUI/NON"); true by default.
    pub follow_up: Option<bool>,
}

/// Cases in the caller's scope, newest first.
#[utoipa::path(
    get, path = "/cases", tag = "cases",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, body = CaseList),
        (status = 401, body = ErrorBody),
        (status = 422, description = "A filter is invalid", body = ErrorBody),
    )
)]
pub async fn list_cases(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<CaseList>, ApiError> {
    let mut problems = Map::new();
    super::checks::one_of(&mut problems, "status", params.status.as_deref(), &STATUSES);
    super::checks::page_limit(&mut problems, params.limit, MAX_PAGE);
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    let now = Timestamp::now();
    let filter = CaseFilter {
        status: params.status,
        overdue_at: params.overdue.unwrap_or(false).then_some(now),
        after: params.after,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    let mut cases = state.storage.cases(&caller.scope, &filter).await?;
    let next = (cases.len() > limit as usize).then(|| {
        cases.truncate(limit as usize);
        cases.last().map(|c| c.id.clone()).unwrap_or_default()
    });
    Ok(Json(CaseList {
        cases: cases.into_iter().map(|c| CaseBody::of(c, now)).collect(),
        next,
    }))
}

/// One case with its history and its SMS thread.
#[utoipa::path(
    get, path = "/cases/{id}", tag = "cases",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The case's id")),
    responses(
        (status = 200, body = CaseDetail),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such case in the caller's scope", body = ErrorBody),
    )
)]
pub async fn get_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    let case = visible_case(&state, &caller, &id).await?;
    let (history, thread) = state.storage.case_history(&id).await?;
    Ok(Json(CaseDetail {
        case: CaseBody::of(case, Timestamp::now()),
        history: history.into_iter().map(HistoryEntry::from).collect(),
        thread: thread.into_iter().map(ThreadEntry::from).collect(),
    }))
}

/// Texts the customer from the channel and number they talk to. The text respects the sending
/// window unless the customer wrote within `cases.reply_window` (an hour by default); a
/// customer who opted out receives nothing (the text stays in the thread, not sent). The
/// first text ends the survey that raised the case, if it still waits for answers (they are
/// kept), so that the customer's answer reaches the agent.
#[utoipa::path(
    post, path = "/cases/{id}/messages", tag = "cases",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The case's id")),
    request_body = CaseMessageRequest,
    responses(
        (status = 202, body = CaseMessageAccepted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such case in the caller's scope", body = ErrorBody),
        (status = 409, description = "The case is closed", body = ErrorBody),
        (status = 422, description = "The text is empty or too long", body = ErrorBody),
    )
)]
pub async fn send_case_message(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CaseMessageRequest>,
) -> Result<(StatusCode, Json<CaseMessageAccepted>), ApiError> {
    let text = request.text.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_TEXT_CHARS {
        let mut problems = Map::new();
        problems.insert(
            "text".into(),
            Value::from(format!("must be 1 to {MAX_TEXT_CHARS} characters")),
        );
        return Err(ApiError::invalid_fields(problems));
    }
    let case = visible_case(&state, &caller, &id).await?;
    if case.status == "closed" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the case is closed; its thread takes no more texts",
        ));
    }
    let now = Timestamp::now();
    let waits_for_window = case
        .customer_wrote_at
        .is_none_or(|wrote| wrote + state.cases.reply_window < now);
    let actor = caller.actor();
    let message_id = state
        .storage
        .send_case_text(
            &CaseText {
                case_id: &case.id,
                body: text,
                actor: &actor,
                waits_for_window,
                send_max_attempts: state.send_max_attempts,
                now,
            },
            |survey| crate::conversation::expiry(&state.flows, survey, now),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CaseMessageAccepted {
            message_id,
            status: "queued".into(),
            waits_for_window,
        }),
    ))
}

/// Gives the case to a user (who must be able to see it); an open case is then in progress.
#[utoipa::path(
    post, path = "/cases/{id}/assign", tag = "cases",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The case's id")),
    request_body = AssignRequest,
    responses(
        (status = 200, body = CaseBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such case in the caller's scope", body = ErrorBody),
        (status = 409, description = "The case is resolved or closed", body = ErrorBody),
        (status = 422, description = "No such user, or one who cannot see the case", body = ErrorBody),
    )
)]
pub async fn assign_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AssignRequest>,
) -> Result<Json<CaseBody>, ApiError> {
    let case = visible_case(&state, &caller, &id).await?;
    let invalid_user = |reason: &str| {
        let mut problems = Map::new();
        problems.insert("user".into(), Value::from(reason));
        ApiError::invalid_fields(problems)
    };
    let assignee = match (&request.user, &caller.user) {
        (Some(email), _) => state
            .storage
            .user_by_email(email.trim())
            .await?
            .ok_or_else(|| invalid_user("no active user has this e-mail"))?,
        (None, Some(me)) => me.clone(),
        (None, None) => {
            return Err(invalid_user(
                "required with an integration's key: the e-mail of the user who takes the case",
            ));
        }
    };
    let sees_it = match (assignee.role.as_str(), &assignee.unit_id) {
        ("admin", _) => true,
        (_, Some(unit)) => CaseScope::Units(state.storage.unit_subtree(unit).await?)
            .allows(case.unit_id.as_deref()),
        (_, None) => false,
    };
    if !sees_it {
        return Err(invalid_user(
            "this user's unit does not cover the case's unit",
        ));
    }
    let now = Timestamp::now();
    state
        .storage
        .assign_case(&case.id, &assignee, &caller.actor(), now)
        .await?;
    let case = visible_case(&state, &caller, &id).await?;
    Ok(Json(CaseBody::of(case, now)))
}

/// Resolves the case with its outcome and, unless `follow_up` is false, texts the customer the
/// recovery question; their yes or no is stored on the case and closes it (otherwise it closes
/// after `cases.close_after`).
#[utoipa::path(
    post, path = "/cases/{id}/resolve", tag = "cases",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The case's id")),
    request_body = ResolveRequest,
    responses(
        (status = 200, body = CaseBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such case in the caller's scope", body = ErrorBody),
        (status = 409, description = "The case is already resolved", body = ErrorBody),
        (status = 422, description = "Unknown outcome", body = ErrorBody),
    )
)]
pub async fn resolve_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ResolveRequest>,
) -> Result<Json<CaseBody>, ApiError> {
    if !OUTCOMES.contains(&request.outcome.as_str()) {
        let mut problems = Map::new();
        problems.insert(
            "outcome".into(),
            Value::from(format!("must be one of {}", OUTCOMES.join(", "))),
        );
        return Err(ApiError::invalid_fields(problems));
    }
    let case = visible_case(&state, &caller, &id).await?;
    let now = Timestamp::now();
    let question = if request.follow_up.unwrap_or(true) {
        // In the customer's language: their survey's, else their locale's; French otherwise.
        let language = state.storage.case_language(&case).await?;
        Some(if language == Some(crate::lang::Lang::En) {
            state.cases.follow_up_en.clone()
        } else {
            state.cases.follow_up_fr.clone()
        })
    } else {
        None
    };
    let actor = caller.actor();
    state
        .storage
        .resolve_case(
            &Resolution {
                case_id: &case.id,
                outcome: &request.outcome,
                actor: &actor,
                follow_up: question,
                close_at: now + state.cases.close_after,
                send_max_attempts: state.send_max_attempts,
                now,
            },
            |survey| crate::conversation::expiry(&state.flows, survey, now),
        )
        .await?;
    let case = visible_case(&state, &caller, &id).await?;
    Ok(Json(CaseBody::of(case, now)))
}

async fn visible_case(state: &AppState, caller: &Caller, id: &str) -> Result<CaseRecord, ApiError> {
    state
        .storage
        .case(id, &caller.scope)
        .await?
        .ok_or_else(|| ApiError::not_found("case"))
}
