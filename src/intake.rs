//! Intake: one customer event — an API request or an import row — checked and turned into the
//! invitation that storage records, or refused with a reason per problem.
//!
//! The API and imports share this code, so that a row of a file is accepted or refused exactly
//! as the same event posted alone would be. What needs the database (the event seen before, an
//! opted-out number, the frequency cap, the quota, an open conversation) is decided by storage,
//! in the transaction that records the invitation.

use crate::config::ChannelConfig;
use crate::conversation::{self, ConversationIds};
use crate::flow::Flow;
use crate::http::Flows;
use crate::phone::{InvalidPhone, Phone, Recipient};
use crate::schedule::SchedulingRules;
use crate::storage::{NewInvitation, QuotaCheck};
use crate::time::Timestamp;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use utoipa::ToSchema;

const MAX_EVENT_ID_CHARS: usize = 200;
const MAX_VARIABLE_CHARS: usize = 500;
/// How far from now an event time may be.
const EVENT_TIME_RANGE_DAYS: i64 = 366;
/// Past ten years a frequency cap means the same; bounded, the dates stay representable.
const MAX_FREQUENCY_CAP_DAYS: u32 = 3_660;

/// One customer event: who to survey, with which flow, about what.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitationRequest {
    /// Your id of the event (order, call, repair); the same id twice is one invitation.
    #[schema(example = "order-123")]
    pub event_id: String,
    /// The flow's id (its file name in `flows/`).
    #[schema(example = "delivery")]
    pub flow: String,
    /// The customer's mobile number, international format (or national, when
    /// `dispatch.default_region` is set).
    #[schema(example = "+33612345678")]
    pub phone: String,
    /// The customer's locale; the conversation uses its language when the flow has it.
    #[schema(example = "fr-FR")]
    pub locale: Option<String>,
    /// The code of the unit (store, agency, team) the event belongs to; its response quota
    /// applies, and its managers see the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "lyon-2")]
    pub unit: Option<String>,
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

/// Why an event was refused, as imports report it (and as the API's 422 names the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    InvalidEventId,
    UnknownFlow,
    InvalidNumber,
    NotMobile,
    InvalidLocale,
    InvalidVariable,
    MissingVariable,
    NoChannel,
    UnknownUnit,
    InvalidEventTime,
    WindowNeverOpens,
    /// The row itself cannot be read (a CSV row with the wrong number of cells, a JSON line
    /// that is not an event).
    Unreadable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidEventId => "invalid_event_id",
            Reason::UnknownFlow => "unknown_flow",
            Reason::InvalidNumber => "invalid_number",
            Reason::NotMobile => "not_mobile",
            Reason::InvalidLocale => "invalid_locale",
            Reason::InvalidVariable => "invalid_variable",
            Reason::MissingVariable => "missing_variable",
            Reason::NoChannel => "no_channel",
            Reason::UnknownUnit => "unknown_unit",
            Reason::InvalidEventTime => "invalid_event_time",
            Reason::WindowNeverOpens => "window_never_opens",
            Reason::Unreadable => "unreadable",
        }
    }
}

/// One thing wrong with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The request's field (`phone`, `variables.first_name`).
    pub field: String,
    pub reason: Reason,
    pub message: String,
}

/// The unit ids by code, as intake resolves an event's `unit`.
pub type UnitIds = HashMap<String, String>;

/// What intake needs from the configuration and the loaded flows.
#[derive(Clone)]
pub struct Intake {
    pub flows: Arc<Flows>,
    /// When surveys may be texted; `None` with `dispatch.immediate`: at once.
    pub scheduling: Option<Arc<SchedulingRules>>,
    pub channel_configs: Arc<BTreeMap<String, ChannelConfig>>,
    /// `dispatch.frequency_cap_days` (0: none).
    pub frequency_cap_days: u32,
    /// `jobs.max_attempts`, for the send jobs.
    pub send_max_attempts: u32,
    /// `dispatch.default_region`.
    pub default_region: Option<phonenumber::country::Id>,
    /// The zone quota periods are counted in (`dispatch.default_time_zone`).
    pub quota_zone: chrono_tz::Tz,
}

impl Intake {
    /// Intake for a validated configuration.
    pub fn new(config: &crate::config::Config, flows: Arc<Flows>) -> Intake {
        let rules = config
            .dispatch
            .rules()
            .expect("the configuration was validated when it loaded");
        Intake {
            flows,
            quota_zone: rules.default_zone(),
            scheduling: (!config.dispatch.immediate).then(|| Arc::new(rules)),
            channel_configs: Arc::new(
                config
                    .effective_channels()
                    .into_iter()
                    .map(|(name, channel)| (name.to_string(), channel))
                    .collect(),
            ),
            frequency_cap_days: config.dispatch.frequency_cap_days,
            send_max_attempts: config.jobs.max_attempts,
            default_region: config
                .dispatch
                .region()
                .expect("the configuration was validated when it loaded"),
        }
    }

    /// The invitation `request` makes for `source` (the integration that sent it), or every
    /// problem found with it. Pure: `units` resolves unit codes, `now` is the time of intake.
    pub fn prepare(
        &self,
        source: &str,
        request: &CreateInvitationRequest,
        units: &UnitIds,
        now: Timestamp,
    ) -> Result<NewInvitation, Vec<Problem>> {
        let checked = self.check(request, units)?;
        let problem = |field: &str, reason, message| {
            vec![Problem {
                field: field.to_string(),
                reason,
                message,
            }]
        };
        let send_at = self
            .plan_send(request, &checked, now)
            .map_err(|(field, reason, message)| problem(field, reason, message))?;
        let dispatch = &checked.flow.dispatch;
        let expires_at = send_at + dispatch.expire_after;
        let remind_at = self.plan_reminder(&checked, send_at, expires_at, now);
        // Due now, the conversation opens with the invitation; due later, its opening job opens
        // it then, from the invitation as stored (storage::opening).
        let opening = (send_at <= now).then(|| {
            let lang = conversation::language(checked.flow, request.locale.as_deref());
            // The ids in the opening's events are settled by storage; the opening raises none.
            conversation::opening(
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
            )
        });
        let quota = dispatch.quota.map(|quota| QuotaCheck {
            responses: quota.responses,
            since: Timestamp::from_datetime(crate::schedule::quota_period_start(
                now.as_datetime(),
                quota.per,
                self.quota_zone,
            )),
        });
        Ok(NewInvitation {
            source: source.to_string(),
            event_id: request.event_id.trim().to_string(),
            payload_hash: payload_hash(request),
            flow_id: checked.flow.id.clone(),
            phone: checked.recipient.phone,
            country: checked.recipient.country,
            locale: request.locale.clone(),
            unit_id: checked.unit_id,
            variables: serde_json::to_value(&request.variables).expect("variables serialise"),
            channel: checked.channel,
            sender: checked.sender,
            opening,
            send_max_attempts: self.send_max_attempts,
            send_at,
            expires_at,
            remind_at,
            surveyed_within: self.frequency_cap(checked.flow, send_at),
            quota,
            now,
        })
    }

    fn check<'a>(
        &'a self,
        request: &CreateInvitationRequest,
        units: &UnitIds,
    ) -> Result<Checked<'a>, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, reason, message: String| {
            problems.push(Problem {
                field: field.to_string(),
                reason,
                message,
            })
        };
        let event_id = request.event_id.trim();
        if event_id.is_empty() || event_id.chars().count() > MAX_EVENT_ID_CHARS {
            problem(
                "event_id",
                Reason::InvalidEventId,
                format!("must be 1 to {MAX_EVENT_ID_CHARS} characters"),
            );
        }
        let flow = self.flows.get(&request.flow);
        if flow.is_none() {
            problem(
                "flow",
                Reason::UnknownFlow,
                format!("no flow '{}' is loaded", shown(&request.flow)),
            );
        }
        let recipient = match Phone::parse_recipient(&request.phone, self.default_region) {
            Ok(recipient) => Some(recipient),
            Err(e) => {
                let (reason, hint) = match e {
                    InvalidPhone::NotMobile => (Reason::NotMobile, ""),
                    _ if self.default_region.is_some() => (Reason::InvalidNumber, ""),
                    _ => (
                        Reason::InvalidNumber,
                        "; give it in international format (+33…)",
                    ),
                };
                problem("phone", reason, format!("{e}{hint}"));
                None
            }
        };
        if let Some(locale) = &request.locale {
            if locale.is_empty() || locale.len() > 35 {
                problem(
                    "locale",
                    Reason::InvalidLocale,
                    "must be a locale such as fr-FR".into(),
                );
            }
        }
        let unit_id = match &request.unit {
            None => None,
            Some(code) => {
                let id = units.get(code.trim()).cloned();
                if id.is_none() {
                    problem(
                        "unit",
                        Reason::UnknownUnit,
                        format!("no unit has the code '{}'", shown(code)),
                    );
                }
                id
            }
        };
        let mut variables = BTreeMap::new();
        for (name, value) in &request.variables {
            let field = format!("variables.{name}");
            let text = match variable_text(value) {
                Some(text) => text,
                None => {
                    problem(
                        &field,
                        Reason::InvalidVariable,
                        "must be a string, a number or a boolean".into(),
                    );
                    continue;
                }
            };
            if text.chars().count() > MAX_VARIABLE_CHARS {
                problem(
                    &field,
                    Reason::InvalidVariable,
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
                        Reason::MissingVariable,
                        format!("the flow '{}' needs it", flow.id),
                    );
                }
            }
        }
        let route = recipient.as_ref().and_then(|recipient| {
            match self.route(request.channel.as_deref(), recipient) {
                Ok(route) => Some(route),
                Err(message) => {
                    problem("channel", Reason::NoChannel, message);
                    None
                }
            }
        });
        match (flow, recipient, route) {
            (Some(flow), Some(recipient), Some((channel, sender))) if problems.is_empty() => {
                Ok(Checked {
                    recipient,
                    variables,
                    channel,
                    sender,
                    unit_id,
                    flow,
                })
            }
            _ => Err(problems),
        }
    }

    /// When the invitation's first message goes out; refused when the event time is out of
    /// range or the flow's window never opens for this number.
    fn plan_send(
        &self,
        request: &CreateInvitationRequest,
        checked: &Checked<'_>,
        now: Timestamp,
    ) -> Result<Timestamp, (&'static str, Reason, String)> {
        let now = now.as_datetime();
        let event_at = request.event_time.unwrap_or(now);
        if (event_at - now).num_days().abs() >= EVENT_TIME_RANGE_DAYS {
            return Err((
                "event_time",
                Reason::InvalidEventTime,
                format!("must be within {EVENT_TIME_RANGE_DAYS} days of now"),
            ));
        }
        let Some(scheduling) = &self.scheduling else {
            // `dispatch.immediate`: development and tests.
            return Ok(Timestamp::from_datetime(now));
        };
        let dispatch = &checked.flow.dispatch;
        scheduling
            .planned_send(
                event_at,
                dispatch.delay,
                now,
                checked.recipient.country.as_deref(),
                dispatch.window.as_ref(),
            )
            .map(Timestamp::from_datetime)
            .ok_or_else(|| {
                (
                    "flow",
                    Reason::WindowNeverOpens,
                    format!(
                        "the sending window of flow '{}' never opens for this number",
                        checked.flow.id
                    ),
                )
            })
    }

    /// The frequency cap for this flow: a contact with a survey due in the returned span (this
    /// survey's send time, give or take the cap's days) is not surveyed again; `None` without a
    /// cap.
    fn frequency_cap(&self, flow: &Flow, send_at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let days = flow
            .dispatch
            .frequency_cap_days
            .unwrap_or(self.frequency_cap_days)
            .min(MAX_FREQUENCY_CAP_DAYS);
        let span = chrono::Duration::days(i64::from(days));
        let at = send_at.as_datetime();
        (days > 0).then(|| {
            (
                Timestamp::from_datetime(at - span),
                Timestamp::from_datetime(at + span),
            )
        })
    }

    /// When a customer who has not answered is reminded: the flow's `reminder.after` past the
    /// first message, inside the window; none when the flow has no reminder or it would come
    /// after the expiry.
    fn plan_reminder(
        &self,
        checked: &Checked<'_>,
        send_at: Timestamp,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let dispatch = &checked.flow.dispatch;
        let after = dispatch.reminder.as_ref()?.after;
        let at = match &self.scheduling {
            None => send_at + after,
            Some(scheduling) => Timestamp::from_datetime(scheduling.planned_send(
                send_at.as_datetime(),
                after,
                now.as_datetime(),
                checked.recipient.country.as_deref(),
                dispatch.window.as_ref(),
            )?),
        };
        (at < expires_at).then_some(at)
    }

    /// The channel and the sender number a conversation uses: the one asked for, or the first
    /// channel that serves the number's country; its first sender that can receive replies.
    fn route(
        &self,
        asked: Option<&str>,
        recipient: &Recipient,
    ) -> Result<(String, String), String> {
        let country = recipient.country.as_deref();
        let serves = |config: &ChannelConfig| {
            let countries = config.common().countries;
            countries.is_empty()
                || country.is_some_and(|c| countries.iter().any(|served| served.as_str() == c))
        };
        let (name, config) = match asked {
            Some(name) => {
                let config = self
                    .channel_configs
                    .get(name)
                    .ok_or_else(|| format!("no channel '{}' is configured", shown(name)))?;
                if !serves(config) {
                    return Err(format!(
                        "the channel '{name}' does not serve this number's country"
                    ));
                }
                (name, config)
            }
            None => self
                .channel_configs
                .iter()
                .find(|(_, config)| serves(config))
                .map(|(name, config)| (name.as_str(), config))
                .ok_or_else(|| "no configured channel serves this number's country".to_string())?,
        };
        let senders = config.common().senders;
        if senders.is_empty() {
            // A channel without senders (the console) answers from its own name.
            return Ok((name.to_string(), name.to_string()));
        }
        senders
            .iter()
            .find(|s| s.receives_replies())
            .map(|s| (name.to_string(), s.as_str().to_string()))
            .ok_or_else(|| {
                format!(
                    "the channel '{name}' sends only from alphanumeric sender IDs, which cannot \
                     receive the answers this flow asks for"
                )
            })
    }
}

/// A caller's value as an error message quotes it: at most 80 characters, so that a huge cell
/// is not copied into reports.
pub fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        None => value.to_string(),
        Some((cut, _)) => format!("{}…", &value[..cut]),
    }
}

/// A variable's value as the flow's templates see it: a string, a number or a boolean as text;
/// `None` for anything else, which intake refuses.
pub fn variable_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// SHA-256 of the request as received: the same event id with another payload is a conflict.
pub fn payload_hash(request: &CreateInvitationRequest) -> [u8; 32] {
    // Streamed into the hash: the same bytes as `to_vec`, without growing a buffer for them
    // (serialising into the buffer was about 6 % of an import's CPU in a profile).
    let mut hash = Sha256::new();
    serde_json::to_writer(&mut hash, request).expect("a request serialises");
    hash.finalize().into()
}

/// A request whose every field checked out.
struct Checked<'a> {
    recipient: Recipient,
    variables: BTreeMap<String, String>,
    channel: String,
    sender: String,
    unit_id: Option<String>,
    flow: &'a Flow,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_hash_is_the_sha256_of_the_request_as_compact_json_so_stored_hashes_stay_valid() {
        let request: CreateInvitationRequest = serde_json::from_str(
            r#"{"event_id": "order-1", "flow": "delivery", "phone": "+33612345678",
                "locale": "fr-FR", "variables": {"order_date": "12/11", "first_name": "Ana"},
                "event_time": "2026-11-28T21:30:00+01:00"}"#,
        )
        .unwrap();
        // SHA-256 of {"event_id":"order-1","flow":"delivery","phone":"+33612345678",
        // "locale":"fr-FR","variables":{"first_name":"Ana","order_date":"12/11"},
        // "channel":null,"event_time":"2026-11-28T20:30:00Z"}, computed outside hearback.
        let expected = "7a939dfc8d68766836bae0e464beeabc6a101f3d343d47e3062c29cb52ee2c4e";
        let hash: String = payload_hash(&request)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(hash, expected);
    }
}
