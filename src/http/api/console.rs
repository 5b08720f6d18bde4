//! `GET /api/v1/console/messages`: what the `console` channels "sent" (development).

use crate::config::ChannelConfig;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::ApiQuery;
use crate::phone::Phone;
use crate::storage::ConsoleMessage;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// Only the messages to this number (international format).
    pub to: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleMessageBody {
    pub id: String,
    pub channel: String,
    pub from: Option<String>,
    pub to: String,
    pub body: String,
    /// `queued`, `sending`, `sent`, `delivered`, `failed_permanent` …
    pub status: String,
    /// `survey`, `opt_out_confirmation`, `opt_in_confirmation` or `help`.
    pub purpose: Option<String>,
    pub segments: Option<i32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleMessages {
    pub messages: Vec<ConsoleMessageBody>,
}

impl From<ConsoleMessage> for ConsoleMessageBody {
    fn from(m: ConsoleMessage) -> Self {
        ConsoleMessageBody {
            id: m.id,
            channel: m.channel,
            from: m.sender,
            to: m.to,
            body: m.body,
            status: m.status,
            purpose: m.purpose,
            segments: m.segments,
            created_at: m.created_at.as_datetime(),
        }
    }
}

/// The messages queued on `console` channels, newest first.
#[utoipa::path(
    get, path = "/console/messages", tag = "console",
    security(("api_key" = [])),
    params(ConsoleQuery),
    responses(
        (status = 200, body = ConsoleMessages),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "Invalid number or limit", body = ErrorBody),
    )
)]
pub async fn list_console_messages(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ConsoleQuery>,
) -> Result<Json<ConsoleMessages>, ApiError> {
    let mut problems = serde_json::Map::new();
    let to = match query.to.as_deref().map(|raw| Phone::parse(raw, None)) {
        None => None,
        Some(Ok(phone)) => Some(phone),
        Some(Err(e)) => {
            problems.insert("to".into(), e.to_string().into());
            None
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        problems.insert("limit".into(), format!("must be 1 to {MAX_LIMIT}").into());
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    let consoles: Vec<String> = state
        .intake
        .channel_configs
        .iter()
        .filter(|(_, c)| matches!(c, ChannelConfig::Console(_)))
        .map(|(name, _)| name.clone())
        .collect();
    let messages = state
        .storage
        .console_messages(&consoles, to.as_ref().map(Phone::as_e164), limit)
        .await?;
    Ok(Json(ConsoleMessages {
        messages: messages.into_iter().map(Into::into).collect(),
    }))
}
