//! `POST /webhooks/{channel}/inbound` and `POST /webhooks/{channel}/status`: what providers send.
//!
//! verify the signature → parse → in one transaction: record the message exactly once (a provider
//! retry is answered 200 and changes nothing), apply an opt-out / opt-in keyword to the contact,
//! find the open conversation on the number the customer wrote to, run the engine, store its
//! state, answers and events, and queue the replies (see [`crate::conversation`] for the rules)
//! → answer the provider at once, in the form it expects (Twilio: empty TwiML). The replies are
//! sent by the job workers.
//!
//! A provider that hands over a long SMS part by part (Vonage) has each part kept in the database
//! until the last one arrives; only the whole message goes further, under the first part's id.

use super::{ApiError, AppState};
use crate::conversation;
use crate::phone::Phone;
use crate::providers::{self, DeliveryStatus, InboundMessage, PartInfo, Provider, WebhookRequest};
use crate::storage::{
    ConsentChange, InboundContext, InboundOutcome, MessagePart, NewStatus, OwnedInbound,
    QueuedInbound,
};
use crate::time::Timestamp;
use crate::understand::{self, Keyword};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tracing::{info, warn};

/// Which webhook a provider called.
#[derive(Clone, Copy)]
enum Hook {
    Inbound,
    Status,
}

pub async fn inbound(
    state: State<AppState>,
    channel: Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle(state, channel, Hook::Inbound, method, uri, headers, body).await
}

pub async fn status(
    state: State<AppState>,
    channel: Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle(state, channel, Hook::Status, method, uri, headers, body).await
}

async fn handle(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    hook: Hook,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_request"
        };
        ApiError::new(rejection.status(), code, rejection.body_text())
    })?;
    let provider: Arc<dyn Provider> = state
        .channels
        .get(&channel)
        .cloned()
        .ok_or_else(|| ApiError::not_found("channel"))?;
    let url = public_url(state.public_url.as_ref(), &headers, &uri);
    let request = WebhookRequest {
        method: &method,
        url: &url,
        headers: &headers,
        body: &body,
    };
    let now = Timestamp::now();
    if let Err(e) = provider.verify(&request, now) {
        warn!(channel = %channel, error = %e, "webhook refused: signature");
        metrics::counter!("hearback_webhooks_refused_total", "channel" => channel.clone(), "reason" => "signature").increment(1);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            e.to_string(),
        ));
    }
    let invalid = |e: crate::providers::ParseError| {
        warn!(channel = %channel, error = %e, "webhook refused: payload");
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", e.to_string())
    };
    match hook {
        Hook::Inbound => {
            for message in provider.parse_inbound(&request).map_err(invalid)? {
                let reassembled = message.part.clone();
                let message = if reassembled.is_none() {
                    message
                } else {
                    match whole_message(&state, &channel, &message, now).await? {
                        Some(whole) => whole,
                        None => {
                            metrics::counter!("hearback_inbound_messages_total", "channel" => channel.clone(), "outcome" => "part").increment(1);
                            continue;
                        }
                    }
                };
                let from = Phone::parse(&message.from, None).ok();
                if from.is_none() {
                    warn!(channel = %channel, "inbound message from something that is not a phone number; kept without a contact");
                }
                let keyword = understand::keyword(&message.text);
                let consent = match keyword {
                    Some(Keyword::OptOut) => Some(ConsentChange::OptedOut),
                    Some(Keyword::OptIn) => Some(ConsentChange::OptedIn),
                    Some(Keyword::Help) | None => None,
                };
                let flows = Arc::clone(&state.flows);
                let rules = Arc::clone(&state.alert_rules);
                let email = state.cases.email;
                let text = message.text.clone();
                let plan = move |context: &InboundContext| {
                    let planning = conversation::Planning {
                        flows: &flows,
                        rules: &rules,
                        email,
                    };
                    conversation::plan_inbound(planning, context, keyword, &text, now)
                };
                let outcome = state
                    .inbound
                    .submit(QueuedInbound {
                        new: OwnedInbound {
                            channel: channel.clone(),
                            provider_message_id: message.provider_message_id.clone(),
                            to: message.to.clone(),
                            from,
                            body: message.text.clone(),
                            consent,
                            received_at: now,
                        },
                        send_max_attempts: state.send_max_attempts,
                        plan: Arc::new(plan),
                    })
                    .await?;
                let label = match &outcome {
                    InboundOutcome::Duplicate => "duplicate",
                    InboundOutcome::Stored {
                        consent_changed: Some(ConsentChange::OptedOut),
                        ..
                    } => "opted_out",
                    InboundOutcome::Stored {
                        consent_changed: Some(ConsentChange::OptedIn),
                        ..
                    } => "opted_in",
                    InboundOutcome::Stored { .. } => "stored",
                };
                if let Some(reassembled) = &reassembled {
                    state
                        .storage
                        .forget_message_parts(&channel, &message.from, &reassembled.reference)
                        .await?;
                }
                info!(channel = %channel, outcome = label, "inbound message");
                metrics::counter!("hearback_inbound_messages_total", "channel" => channel.clone(), "outcome" => label).increment(1);
            }
        }
        Hook::Status => {
            for update in provider.parse_status(&request).map_err(invalid)? {
                state
                    .storage
                    .record_status(&NewStatus {
                        channel: &channel,
                        provider_message_id: &update.provider_message_id,
                        status: stored_status(update.status),
                        error_code: update.error_code.as_deref(),
                        number_status: match update.status {
                            DeliveryStatus::FailedPermanent(reason) => reason.number_status(),
                            _ => None,
                        },
                        received_at: now,
                    })
                    .await?;
            }
        }
    }
    Ok(acknowledge(provider.name()))
}

/// Keeps one part of a concatenated SMS; returns the whole message once every part is here
/// (see [`Storage::store_message_part`](crate::storage::Storage::store_message_part)).
async fn whole_message(
    state: &AppState,
    channel: &str,
    message: &InboundMessage,
    now: Timestamp,
) -> Result<Option<InboundMessage>, ApiError> {
    let Some(info) = &message.part else {
        return Ok(Some(message.clone()));
    };
    let part = MessagePart {
        provider_message_id: message.provider_message_id.clone(),
        sender: message.from.clone(),
        recipient: message.to.clone(),
        reference: info.reference.clone(),
        part_index: i32::from(info.index),
        part_total: i32::from(info.total),
        body: message.text.clone(),
    };
    let stored = state
        .storage
        .store_message_part(channel, &part, now)
        .await?;
    // The part just received leads, so that only parts of its own message (same total) count.
    let parts: Vec<InboundMessage> = std::iter::once(message.clone())
        .chain(stored.into_iter().map(|p| InboundMessage {
            provider_message_id: p.provider_message_id,
            from: p.sender,
            to: p.recipient,
            text: p.body,
            part: Some(PartInfo {
                reference: p.reference,
                index: u16::try_from(p.part_index).unwrap_or(0),
                total: u16::try_from(p.part_total).unwrap_or(0),
            }),
        }))
        .collect();
    Ok(providers::reassemble(&parts))
}

/// The URL the provider signed: the configured public base URL with this request's path and
/// query, or, without one, the URL rebuilt from the Host header.
fn public_url(base: Option<&url::Url>, headers: &HeaderMap, uri: &Uri) -> String {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    match base {
        Some(base) => format!("{}{path_and_query}", base.as_str().trim_end_matches('/')),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}{path_and_query}")
        }
    }
}

fn stored_status(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Queued => "queued",
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::FailedTemporary => "failed_temporary",
        DeliveryStatus::FailedPermanent(_) => "failed_permanent",
    }
}

/// A webhook route called with another method: most likely a provider whose callbacks are set
/// to GET (Vonage's SMS API, Twilio and Plivo allow it), which nothing here reads or verifies.
pub async fn not_post() -> Response {
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "webhooks are accepted as POST only: set the provider's webhook (callback) method to POST",
    );
    ([(axum::http::header::ALLOW, "POST")], error).into_response()
}

/// What the provider expects back. Twilio reads the body as TwiML: an empty `<Response/>`
/// means "send nothing back" (replies go out through the API, after the transaction).
fn acknowledge(provider: &str) -> Response {
    match provider {
        "twilio" => (
            [(header::CONTENT_TYPE, "text/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
        )
            .into_response(),
        _ => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "received": true })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_url_uses_the_configured_public_base() {
        let uri: Uri = "/webhooks/twilio/inbound?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "10.0.0.5:8080".parse().unwrap());
        let base = url::Url::parse("https://sms.example.com/").unwrap();
        assert_eq!(
            public_url(Some(&base), &headers, &uri),
            "https://sms.example.com/webhooks/twilio/inbound?x=1"
        );
        assert_eq!(
            public_url(None, &headers, &uri),
            "http://10.0.0.5:8080/webhooks/twilio/inbound?x=1"
        );
    }
}
