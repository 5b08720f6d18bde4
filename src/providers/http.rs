//! hearback's own webhook format, for any SMS gateway (or a small bridge in front of one).
//!
//! # Signature
//!
//! The gateway shares a secret with the channel (`secret` in its `[channels.<name>]` table) and
//! sends two headers with every webhook:
//!
//! - `Hearback-Timestamp`: the time of signing, in Unix seconds;
//! - `Hearback-Signature`: `v1=` followed by the lower-case hex HMAC-SHA256, keyed with the
//!   secret, of `<timestamp>.<raw body>` (the timestamp header's text, a dot, the body bytes).
//!   During a secret rotation several signatures may be sent, comma-separated
//!   (`v1=…,v1=…`); one match is enough.
//!
//! A webhook signed more than five minutes away from hearback's clock is refused (replay).
//! In a shell: `printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$secret"`.
//!
//! # Bodies
//!
//! JSON, one object or an array of objects. Inbound messages (to `/webhooks/<channel>/inbound`):
//!
//! ```json
//! {"id": "gw-123", "from": "+33612345678", "to": "+33757000000", "text": "9 merci",
//!  "part": {"reference": "ab12", "index": 1, "total": 2}}
//! ```
//!
//! `part` only for a long SMS the gateway hands over part by part (a `total` of 1 is read as a
//! whole message). Delivery statuses (to
//! `/webhooks/<channel>/status`):
//!
//! ```json
//! {"id": "gw-456", "status": "failed_permanent", "reason": "landline", "error_code": "E42"}
//! ```
//!
//! `status` is one of `queued`, `sent`, `delivered`, `failed_temporary`, `failed_permanent`;
//! `reason` (with `failed_permanent` only) one of `invalid_number`, `landline`, `unreachable`,
//! `opted_out`, `blocked`, `other` (the default); `error_code` is the gateway's own, optional.
//!
//! # Sending
//!
//! hearback POSTs each outbound SMS to the channel's `api_base_url`, used as the full address
//! (this provider has no default), with `Content-Type: application/json` and the same two
//! headers, signed the same way with the same secret, so the gateway checks hearback exactly as
//! hearback checks it:
//!
//! ```json
//! {"from": "+33757000000", "to": "+33612345678", "text": "Votre avis ?",
//!  "status_callback": "https://hearback.example/webhooks/gateway/status"}
//! ```
//!
//! `status_callback` is left out when there is none. The gateway answers 2xx with
//! `{"id": "gw-456", "segments": 1, "cost": "0.05 EUR"}` (`id` is required: the statuses it
//! posts later carry it; `segments` and `cost` are optional). To refuse, it answers 4xx with
//! `{"reason": "invalid_number", "error_code": "E21"}`, `reason` one of the statuses' reasons
//! above (optional, like `error_code`): hearback will not send that message again. 429 or 503
//! (with `Retry-After` in seconds or as an HTTP date, honoured), another 5xx or 408 mean "later":
//! hearback retries.

use super::send::{self, Outcome};
use super::wire;
use super::{
    DeliveryStatus, InboundMessage, OutboundSms, ParseError, PartInfo, PermanentReason, Provider,
    SendError, Sent, StatusUpdate, VerifyError, WebhookRequest,
};
use crate::config::{HttpChannel, Secret};
use crate::time::Timestamp;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use url::Url;

pub const SIGNATURE_HEADER: &str = "hearback-signature";
pub const TIMESTAMP_HEADER: &str = "hearback-timestamp";

pub struct HttpGateway {
    secret: Secret,
    api_base_url: Option<Url>,
}

impl HttpGateway {
    pub fn new(config: &HttpChannel) -> Self {
        Self {
            secret: config.secret.clone(),
            api_base_url: config.api_base_url.clone(),
        }
    }

    async fn send_sms(
        &self,
        client: &reqwest::Client,
        sms: OutboundSms<'_>,
    ) -> Result<Sent, SendError> {
        let Some(url) = &self.api_base_url else {
            return Err(SendError::Permanent {
                reason: "http: the channel has no api_base_url to send to".into(),
                code: Some("not_configured".into()),
                permanent: None,
            });
        };
        let mut body = json!({"from": sms.from, "to": sms.to, "text": sms.text});
        if let Some(callback) = sms.status_callback {
            body["status_callback"] = json!(callback);
        }
        let body = body.to_string().into_bytes();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let request = client
            .post(url.as_str())
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, sign(&self.secret, &timestamp, &body))
            .body(body);
        let answer = send::call("http", request).await?;
        let reply = answer.json();
        if !answer.status.is_success() {
            let code = reply
                .as_ref()
                .and_then(|r| wire::json_code(r, "/error_code"))
                .map(|c| wire::bounded(&c));
            let mapped = reply
                .as_ref()
                .and_then(|r| r.get("reason")?.as_str())
                .and_then(|reason| status("failed_permanent", Some(reason)).ok())
                .and_then(Outcome::from_delivery);
            return Err(send::unsuccessful("http", &answer, code, mapped));
        }
        let reply = reply.ok_or_else(|| send::unreadable("http", "not JSON"))?;
        Ok(Sent {
            provider_message_id: send::message_id(reply.get("id"))
                .ok_or_else(|| send::unreadable("http", "no id"))?,
            segments: send::count(reply.get("segments")),
            cost: send::cost(reply.get("cost").and_then(Value::as_str), None),
        })
    }
}

/// The `Hearback-Signature` value for `body` signed at `timestamp`, for gateways written in Rust
/// and for tests.
pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    let mac = wire::hmac_sha256(
        secret.expose().as_bytes(),
        &[timestamp.as_bytes(), b".", body],
    );
    format!("v1={}", hex::encode(mac))
}

impl Provider for HttpGateway {
    fn name(&self) -> &'static str {
        "http"
    }

    fn verify(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError> {
        let given = wire::header(request, SIGNATURE_HEADER)?;
        let timestamp = wire::header(request, TIMESTAMP_HEADER)?;
        let signed_at = wire::unix_seconds(timestamp, TIMESTAMP_HEADER)?;
        let expected = sign(&self.secret, timestamp, request.body);
        let mut matched = false;
        let mut any_v1 = false;
        for candidate in given.split(',').map(str::trim) {
            if candidate.starts_with("v1=") {
                any_v1 = true;
                matched |= wire::ct_eq(candidate.as_bytes(), expected.as_bytes());
            }
        }
        if !any_v1 {
            return Err(VerifyError::MalformedHeader {
                header: SIGNATURE_HEADER,
                reason: "no v1= signature",
            });
        }
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        wire::within_window(signed_at, now, wire::REPLAY_WINDOW_SECS)
    }

    fn parse_inbound(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundMessage>, ParseError> {
        parse_inbound(request.body)
    }

    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError> {
        parse_status(request.body)
    }

    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        sms: OutboundSms<'a>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.send_sms(client, sms))
    }
}

/// One object or an array of objects.
fn objects(body: &[u8]) -> Result<Vec<Value>, ParseError> {
    match wire::json(body)? {
        Value::Array(items) => Ok(items),
        object @ Value::Object(_) => Ok(vec![object]),
        _ => Err(ParseError::InvalidField {
            field: "body",
            reason: "not an object or an array of objects",
        }),
    }
}

pub(super) fn parse_inbound(body: &[u8]) -> Result<Vec<InboundMessage>, ParseError> {
    objects(body)?.iter().map(inbound).collect()
}

fn inbound(item: &Value) -> Result<InboundMessage, ParseError> {
    let part = match item.get("part") {
        None | Some(Value::Null) => None,
        Some(part) => {
            let number = |field: &'static str, pointer: &str| -> Result<u16, ParseError> {
                part.pointer(pointer)
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n >= 1)
                    .ok_or(ParseError::InvalidField {
                        field,
                        reason: "not a number from 1 to 65535",
                    })
            };
            let index = number("part.index", "/index")?;
            let total = number("part.total", "/total")?;
            if index > total {
                return Err(ParseError::InvalidField {
                    field: "part.index",
                    reason: "greater than part.total",
                });
            }
            let reference = wire::json_str(part, "/reference", "part.reference")?.to_string();
            // A message in one part is a whole message (as Vonage's `concat-total` of 1).
            (total > 1).then_some(PartInfo {
                reference,
                index,
                total,
            })
        }
    };
    Ok(InboundMessage {
        provider_message_id: non_empty(item, "id")?.to_string(),
        from: wire::normalise_address(non_empty(item, "from")?),
        to: wire::normalise_address(non_empty(item, "to")?),
        text: wire::json_str(item, "/text", "text")?.to_string(),
        part,
    })
}

fn non_empty<'v>(item: &'v Value, field: &'static str) -> Result<&'v str, ParseError> {
    let pointer = format!("/{field}");
    let value = wire::json_str(item, &pointer, field)?;
    if value.is_empty() {
        Err(ParseError::MissingField(field))
    } else {
        Ok(value)
    }
}

pub(super) fn parse_status(body: &[u8]) -> Result<Vec<StatusUpdate>, ParseError> {
    objects(body)?.iter().map(status_update).collect()
}

fn status_update(item: &Value) -> Result<StatusUpdate, ParseError> {
    let raw_status = non_empty(item, "status")?;
    let reason = match item.get("reason") {
        None | Some(Value::Null) => None,
        Some(_) => Some(wire::json_str(item, "/reason", "reason")?),
    };
    Ok(StatusUpdate {
        provider_message_id: non_empty(item, "id")?.to_string(),
        status: status(raw_status, reason)?,
        error_code: wire::json_code(item, "/error_code"),
        raw_status: raw_status.to_string(),
    })
}

pub(super) fn status(raw: &str, reason: Option<&str>) -> Result<DeliveryStatus, ParseError> {
    use DeliveryStatus::*;
    use PermanentReason::*;
    Ok(match raw {
        "queued" => Queued,
        "sent" => Sent,
        "delivered" => Delivered,
        "failed_temporary" => FailedTemporary,
        "failed_permanent" => FailedPermanent(match reason {
            None | Some("other") => Other,
            Some("invalid_number") => InvalidNumber,
            Some("landline") => Landline,
            Some("unreachable") => Unreachable,
            Some("opted_out") => OptedOutAtCarrier,
            Some("blocked") => Blocked,
            Some(_) => {
                return Err(ParseError::InvalidField {
                    field: "reason",
                    reason: "not one of the documented reasons",
                });
            }
        }),
        other => return Err(ParseError::UnknownStatus(wire::bounded(other))),
    })
}
