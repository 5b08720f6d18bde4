//! MessageBird and Bird webhooks.
//!
//! **JWT** (<https://developers.messagebird.com/docs/verify-http-requests>): the
//! `MessageBird-Signature-JWT` header is a JWT signed with the account's signing key (HS256,
//! HS384 or HS512). Its claims: `iss` is `MessageBird`; `nbf` and `exp` bound when it is valid;
//! `url_hash` is the hex SHA-256 of the full URL called; `payload_hash` is the hex SHA-256 of the
//! body, present exactly when there is a body.
//!
//! **Legacy** (MessageBird's former scheme, kept in its SDKs as deprecated):
//! `MessageBird-Signature` is the base64 HMAC-SHA256, keyed with the signing key, of
//! `<MessageBird-Request-Timestamp>\n<query>\n<SHA-256 of the body>`, the query re-encoded with
//! its parameters sorted by name (Go's `url.Values.Encode`) and the body hash as 32 raw bytes.
//!
//! **Bird** (<https://docs.bird.com/api/notifications-api/api-reference/webhooks/verifying-a-webhook>):
//! the same headers, the HMAC over `<timestamp>\n<full URL>\n<SHA-256 of the body>`.
//!
//! The legacy and Bird timestamps must be within five minutes of now (MessageBird's SDK allowed
//! only ±2.5 s, which real clock skew exceeds).
//!
//! Payloads: MessageBird's query or form parameters: inbound `id`, `originator`, `recipient`,
//! `body`; status reports `id`, `status`, `statusErrorCode`
//! (<https://developers.messagebird.com/api/sms-messaging/#handle-a-status-report>). Bird's own
//! JSON events are not parsed yet.
//!
//! Sending (<https://developers.messagebird.com/api/sms-messaging/#send-outbound-sms>):
//! `POST /messages` on `https://rest.messagebird.com`, `Authorization: AccessKey <access_key>`,
//! a JSON body `originator`, `recipients` (a list of one number, international digits without
//! `+`), `body`, `datacoding` `auto` (UCS-2 only when the text needs it) and `reportUrl` for
//! status reports. MessageBird answers 201 with the message (`id`); a refusal is
//! `{"errors": [{"code", "description", "parameter"}]}`
//! (<https://developers.messagebird.com/api/#api-errors>): code 9 or 10 on the `recipients`
//! parameter means no valid recipient, 25 not enough balance, 99 an internal error.

use super::send::{self, Outcome};
use super::wire::{self, JwtAlgorithm, Params};
use super::{
    DeliveryStatus, InboundMessage, OutboundSms, ParseError, PermanentReason, Provider, SendError,
    Sent, StatusUpdate, VerifyError, WebhookRequest,
};
use crate::config::{MessageBirdChannel, MessageBirdSignature, Secret};
use crate::time::Timestamp;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use url::Url;

const API_BASE_URL: &str = "https://rest.messagebird.com";

const JWT_HEADER: &str = "messagebird-signature-jwt";
const SIGNATURE_HEADER: &str = "messagebird-signature";
const TIMESTAMP_HEADER: &str = "messagebird-request-timestamp";

pub struct MessageBird {
    signing_key: Secret,
    scheme: MessageBirdSignature,
    access_key: Secret,
    api_base_url: Option<Url>,
}

impl MessageBird {
    pub fn new(config: &MessageBirdChannel) -> Self {
        Self {
            signing_key: config.signing_key.clone(),
            scheme: config.signature,
            access_key: config.access_key.clone(),
            api_base_url: config.api_base_url.clone(),
        }
    }

    async fn send_sms(
        &self,
        client: &reqwest::Client,
        sms: OutboundSms<'_>,
    ) -> Result<Sent, SendError> {
        let url = send::endpoint(self.api_base_url.as_ref(), API_BASE_URL, "/messages");
        let mut body = json!({
            "originator": send::digits_only(sms.from),
            "recipients": [send::digits_only(sms.to)],
            "body": sms.text,
            "datacoding": "auto",
        });
        if let Some(callback) = sms.status_callback {
            body["reportUrl"] = json!(callback);
        }
        let request = client
            .post(url)
            .header(
                "Authorization",
                format!("AccessKey {}", self.access_key.expose()),
            )
            .json(&body);
        let answer = send::call("messagebird", request).await?;
        let body = answer.json();
        if !answer.status.is_success() {
            let error = body.as_ref().and_then(|b| b.pointer("/errors/0"));
            let code = error.and_then(|e| wire::json_code(e, "/code"));
            let parameter = error
                .and_then(|e| e.get("parameter"))
                .and_then(Value::as_str);
            let mapped = code.as_deref().and_then(|code| refusal(code, parameter));
            return Err(send::unsuccessful("messagebird", &answer, code, mapped));
        }
        let body = body.ok_or_else(|| send::unreadable("messagebird", "not JSON"))?;
        Ok(Sent {
            provider_message_id: send::message_id(body.get("id"))
                .ok_or_else(|| send::unreadable("messagebird", "no id"))?,
            segments: None,
            cost: None,
        })
    }

    fn verify_jwt(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError> {
        let token = wire::header(request, JWT_HEADER)?;
        let claims = wire::verify_jwt(
            token,
            self.signing_key.expose().as_bytes(),
            &[
                JwtAlgorithm::Hs256,
                JwtAlgorithm::Hs384,
                JwtAlgorithm::Hs512,
            ],
        )?;
        match claims.get("iss").and_then(Value::as_str) {
            None => return Err(VerifyError::MissingClaim("iss")),
            Some("MessageBird") => {}
            Some(_) => return Err(VerifyError::ClaimMismatch("iss")),
        }
        let now_secs = now.as_millis() / 1000;
        if wire::claim_seconds(&claims, "nbf")?.is_some_and(|nbf| now_secs < nbf) {
            return Err(VerifyError::TokenNotYetValid);
        }
        let expires =
            wire::claim_seconds(&claims, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
        if now_secs >= expires {
            return Err(VerifyError::TokenExpired);
        }
        let url_hash = claims
            .get("url_hash")
            .and_then(Value::as_str)
            .ok_or(VerifyError::MissingClaim("url_hash"))?;
        if !wire::hex_claim_matches(url_hash, &wire::sha256(request.url.as_bytes())) {
            return Err(VerifyError::ClaimMismatch("url_hash"));
        }
        match (
            claims.get("payload_hash").and_then(Value::as_str),
            request.body.is_empty(),
        ) {
            (None, true) => Ok(()),
            (None, false) => Err(VerifyError::MissingClaim("payload_hash")),
            (Some(_), true) => Err(VerifyError::ClaimMismatch("payload_hash")),
            (Some(hash), false) if wire::hex_claim_matches(hash, &wire::sha256(request.body)) => {
                Ok(())
            }
            (Some(_), false) => Err(VerifyError::ClaimMismatch("payload_hash")),
        }
    }

    fn verify_hmac(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError> {
        let given =
            wire::decode_base64(wire::header(request, SIGNATURE_HEADER)?, SIGNATURE_HEADER)?;
        let timestamp = wire::header(request, TIMESTAMP_HEADER)?;
        let signed_at = wire::unix_seconds(timestamp, TIMESTAMP_HEADER)?;
        let middle = match self.scheme {
            MessageBirdSignature::Bird => request.url.to_string(),
            _ => go_sorted_query(&Params::from_query(request.url)),
        };
        let expected = wire::hmac_sha256(
            self.signing_key.expose().as_bytes(),
            &[
                timestamp.as_bytes(),
                b"\n",
                middle.as_bytes(),
                b"\n",
                &wire::sha256(request.body),
            ],
        );
        if !wire::ct_eq(&given, &expected) {
            return Err(VerifyError::SignatureMismatch);
        }
        wire::within_window(signed_at, now, wire::REPLAY_WINDOW_SECS)
    }
}

/// The query as Go's `url.Values.Encode` writes it: sorted by name, `QueryEscape`d.
fn go_sorted_query(params: &Params) -> String {
    let mut pairs: Vec<&(String, String)> = params.0.iter().collect();
    // Stable: a name's values keep their order, as in Go's map of slices.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", go_query_escape(k), go_query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn go_query_escape(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                escaped.push(char::from(byte));
            }
            b' ' => escaped.push('+'),
            other => escaped.push_str(&format!("%{other:02X}")),
        }
    }
    escaped
}

impl Provider for MessageBird {
    fn name(&self) -> &'static str {
        "messagebird"
    }

    fn verify(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError> {
        match self.scheme {
            MessageBirdSignature::Jwt => self.verify_jwt(request, now),
            MessageBirdSignature::Legacy | MessageBirdSignature::Bird => {
                self.verify_hmac(request, now)
            }
        }
    }

    fn parse_inbound(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundMessage>, ParseError> {
        let params = params(request)?;
        if params.get("body").is_none() && params.get("status").is_some() {
            return Err(ParseError::UnexpectedKind("status report".into()));
        }
        Ok(vec![InboundMessage {
            provider_message_id: params.require_non_empty("id")?.to_string(),
            from: wire::normalise_address(params.require_non_empty("originator")?),
            to: wire::normalise_address(params.require_non_empty("recipient")?),
            text: params.require("body")?.to_string(),
            part: None,
        }])
    }

    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError> {
        let params = params(request)?;
        let raw_status = params.require_non_empty("status")?;
        Ok(vec![StatusUpdate {
            provider_message_id: params.require_non_empty("id")?.to_string(),
            status: status(raw_status)?,
            error_code: params
                .get("statusErrorCode")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            raw_status: raw_status.to_string(),
        }])
    }

    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        sms: OutboundSms<'a>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.send_sms(client, sms))
    }
}

/// MessageBird's API error codes, with the parameter they blame.
fn refusal(code: &str, parameter: Option<&str>) -> Option<Outcome> {
    use PermanentReason::*;
    match code {
        // "No (correct) recipients found" comes as a missing or invalid `recipients`.
        "9" | "10" if parameter == Some("recipients") => Some(Outcome::Refused(InvalidNumber)),
        "2" | "9" | "10" | "20" | "21" | "25" | "98" => Some(Outcome::Refused(Other)),
        "99" => Some(Outcome::Retry),
        _ => None,
    }
}

fn params(request: &WebhookRequest<'_>) -> Result<Params, ParseError> {
    if request.body.trim_ascii_start().starts_with(b"{") {
        return Err(ParseError::UnexpectedKind("JSON event".into()));
    }
    let mut params = Params::from_query(request.url);
    params.0.extend(Params::from_form(request.body)?.0);
    Ok(params)
}

/// MessageBird's statuses. Its `statusErrorCode`s are kept but not classified: no verified
/// table of them was available, so a failure never marks the number.
pub(super) fn status(raw: &str) -> Result<DeliveryStatus, ParseError> {
    use DeliveryStatus::*;
    Ok(match raw {
        "scheduled" => Queued,
        "sent" | "buffered" => Sent,
        "delivered" => Delivered,
        "expired" | "delivery_failed" => FailedTemporary,
        other => return Err(ParseError::UnknownStatus(wire::bounded(other))),
    })
}
