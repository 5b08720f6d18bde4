//! Telnyx messaging webhooks (<https://developers.telnyx.com/docs/messaging/messages/receiving-webhooks>).
//!
//! Signature: `telnyx-signature-ed25519` is the base64 Ed25519 signature, by the account's key
//! pair, of `<telnyx-timestamp>|<raw body>`; the public key is in the Telnyx portal. The
//! timestamp (Unix seconds) must be within five minutes of now, as in Telnyx's SDKs.
//!
//! Payloads: JSON `{"data": {"event_type", "payload": {…}}}`. `message.received` is an inbound
//! message (`payload.id`, `payload.from.phone_number`, `payload.to[0].phone_number`,
//! `payload.text`; Telnyx joins long SMS itself); `message.sent` and `message.finalized` report
//! delivery (`payload.to[0].status`, `payload.errors[0].code`,
//! <https://developers.telnyx.com/docs/messaging/messages/error-codes>).
//!
//! Sending (<https://developers.telnyx.com/api/messaging/send-message>): `POST /v2/messages` on
//! `https://api.telnyx.com`, `Authorization: Bearer <api_key>`, a JSON body `from`, `to`, `text`
//! and `webhook_url` for delivery statuses. Telnyx answers 200 with
//! `{"data": {"id", "parts", "cost": {"amount", "currency"}, …}}`; a refusal is
//! `{"errors": [{"code", "title", "detail", "source": {"pointer"}}]}`, its code classified with
//! the delivery table plus the request errors that name the recipient (40310 invalid `to`, 40012
//! invalid destination, 10002/10016 pointing at `/to`; 40300 blocked after a STOP;
//! <https://developers.telnyx.com/development/api-fundamentals/api-errors>).

use super::send::{self, Outcome};
use super::wire;
use super::{
    BuildError, DeliveryStatus, InboundMessage, OutboundSms, ParseError, PermanentReason, Provider,
    SendError, Sent, StatusUpdate, VerifyError, WebhookRequest,
};
use crate::config::{Secret, TelnyxChannel};
use crate::time::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use url::Url;

const API_BASE_URL: &str = "https://api.telnyx.com";

const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
const TIMESTAMP_HEADER: &str = "telnyx-timestamp";

pub struct Telnyx {
    public_key: VerifyingKey,
    api_key: Secret,
    api_base_url: Option<Url>,
}

impl Telnyx {
    pub fn new(config: &TelnyxChannel) -> Result<Self, BuildError> {
        let invalid = |reason: &str| BuildError::Invalid {
            key: "public_key",
            reason: reason.to_string(),
        };
        let bytes = STANDARD
            .decode(config.public_key.trim())
            .map_err(|_| invalid("not base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid("an Ed25519 public key is 32 bytes"))?;
        let public_key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("not an Ed25519 public key"))?;
        Ok(Self {
            public_key,
            api_key: config.api_key.clone(),
            api_base_url: config.api_base_url.clone(),
        })
    }

    async fn send_sms(
        &self,
        client: &reqwest::Client,
        sms: OutboundSms<'_>,
    ) -> Result<Sent, SendError> {
        let url = send::endpoint(self.api_base_url.as_ref(), API_BASE_URL, "/v2/messages");
        let mut body = json!({"from": sms.from, "to": sms.to, "text": sms.text});
        if let Some(callback) = sms.status_callback {
            body["webhook_url"] = json!(callback);
        }
        let request = client
            .post(url)
            .bearer_auth(self.api_key.expose())
            .json(&body);
        let answer = send::call("telnyx", request).await?;
        let body = answer.json();
        if !answer.status.is_success() {
            let error = body.as_ref().and_then(|b| b.pointer("/errors/0"));
            let code = error.and_then(|e| wire::json_code(e, "/code"));
            let pointer = error
                .and_then(|e| e.pointer("/source/pointer"))
                .and_then(Value::as_str);
            let mapped = code.as_deref().and_then(|code| refusal(code, pointer));
            return Err(send::unsuccessful("telnyx", &answer, code, mapped));
        }
        let body = body.ok_or_else(|| send::unreadable("telnyx", "not JSON"))?;
        Ok(Sent {
            provider_message_id: send::message_id(body.pointer("/data/id"))
                .ok_or_else(|| send::unreadable("telnyx", "no data.id"))?,
            segments: send::count(body.pointer("/data/parts")),
            cost: send::cost(
                body.pointer("/data/cost/amount").and_then(Value::as_str),
                body.pointer("/data/cost/currency").and_then(Value::as_str),
            ),
        })
    }
}

impl Provider for Telnyx {
    fn name(&self) -> &'static str {
        "telnyx"
    }

    fn verify(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError> {
        let signature =
            wire::decode_base64(wire::header(request, SIGNATURE_HEADER)?, SIGNATURE_HEADER)?;
        let signature =
            Signature::from_slice(&signature).map_err(|_| VerifyError::MalformedHeader {
                header: SIGNATURE_HEADER,
                reason: "an Ed25519 signature is 64 bytes",
            })?;
        let timestamp = wire::header(request, TIMESTAMP_HEADER)?;
        let signed_at = wire::unix_seconds(timestamp, TIMESTAMP_HEADER)?;
        let mut message = Vec::with_capacity(timestamp.len() + 1 + request.body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.push(b'|');
        message.extend_from_slice(request.body);
        // `verify_strict` also refuses malleable signatures and weak keys.
        self.public_key
            .verify_strict(&message, &signature)
            .map_err(|_| VerifyError::SignatureMismatch)?;
        wire::within_window(signed_at, now, wire::REPLAY_WINDOW_SECS)
    }

    fn parse_inbound(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundMessage>, ParseError> {
        let body = wire::json(request.body)?;
        let event = wire::json_str(&body, "/data/event_type", "data.event_type")?;
        if event != "message.received" {
            return Err(ParseError::UnexpectedKind(wire::bounded(event)));
        }
        let payload = body
            .pointer("/data/payload")
            .ok_or(ParseError::MissingField("data.payload"))?;
        if let Some(kind) = payload.get("type").and_then(Value::as_str) {
            if kind != "SMS" {
                return Err(ParseError::UnexpectedKind(wire::bounded(kind)));
            }
        }
        Ok(vec![InboundMessage {
            provider_message_id: wire::json_str(payload, "/id", "data.payload.id")?.to_string(),
            from: wire::normalise_address(wire::json_str(
                payload,
                "/from/phone_number",
                "data.payload.from.phone_number",
            )?),
            to: wire::normalise_address(wire::json_str(
                payload,
                "/to/0/phone_number",
                "data.payload.to.phone_number",
            )?),
            text: wire::json_str(payload, "/text", "data.payload.text")?.to_string(),
            part: None,
        }])
    }

    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError> {
        let body = wire::json(request.body)?;
        let event = wire::json_str(&body, "/data/event_type", "data.event_type")?;
        if !matches!(event, "message.sent" | "message.finalized") {
            return Err(ParseError::UnexpectedKind(wire::bounded(event)));
        }
        let payload = body
            .pointer("/data/payload")
            .ok_or(ParseError::MissingField("data.payload"))?;
        let raw_status = wire::json_str(payload, "/to/0/status", "data.payload.to.status")?;
        let error_code = wire::json_code(payload, "/errors/0/code");
        Ok(vec![StatusUpdate {
            provider_message_id: wire::json_str(payload, "/id", "data.payload.id")?.to_string(),
            status: status(raw_status, error_code.as_deref())?,
            error_code,
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

/// A request error's code, with the JSON pointer of the field it blames.
fn refusal(code: &str, pointer: Option<&str>) -> Option<Outcome> {
    use PermanentReason::*;
    match code {
        "40310" | "40012" => Some(Outcome::Refused(InvalidNumber)),
        // "Invalid phone number" and "must be in +E.164 format" blame whichever field is wrong;
        // only the recipient's says something about the customer's number.
        "10002" | "10016" if pointer == Some("/to") => Some(Outcome::Refused(InvalidNumber)),
        "10002" | "10016" | "40305" | "40013" => Some(Outcome::Refused(Other)),
        // Too many requests, unexpected error, request timeout.
        "10011" | "10007" | "10008" => Some(Outcome::Retry),
        _ => failure(code).and_then(Outcome::from_delivery),
    }
}

/// Telnyx's recipient statuses; a failure's kind comes from its error code.
pub(super) fn status(raw: &str, error_code: Option<&str>) -> Result<DeliveryStatus, ParseError> {
    use DeliveryStatus::*;
    Ok(match raw {
        "queued" | "sending" => Queued,
        "sent" | "delivery_unconfirmed" => Sent,
        "delivered" => Delivered,
        "delivery_failed" => error_code.and_then(failure).unwrap_or(FailedTemporary),
        // Never left Telnyx: our side unless a code says more.
        "sending_failed" => error_code
            .and_then(failure)
            .unwrap_or(FailedPermanent(PermanentReason::Other)),
        other => return Err(ParseError::UnknownStatus(wire::bounded(other))),
    })
}

pub(super) fn failure(code: &str) -> Option<DeliveryStatus> {
    use DeliveryStatus::*;
    use PermanentReason::*;
    Some(match code {
        // "Not routable (landline or non-routable)": not `Landline`, which would wrongly mark a
        // mobile that merely has no route.
        "40001" => FailedPermanent(Unreachable),
        "40002" | "40005" | "40006" | "40008" => FailedTemporary,
        "40003" | "40004" => FailedPermanent(Blocked),
        "40009" => FailedPermanent(Other),
        "40300" => FailedPermanent(OptedOutAtCarrier),
        _ => return None,
    })
}
