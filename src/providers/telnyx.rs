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

use super::wire;
use super::{
    BuildError, DeliveryStatus, InboundMessage, ParseError, PermanentReason, Provider,
    StatusUpdate, VerifyError, WebhookRequest,
};
use crate::config::TelnyxChannel;
use crate::time::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;

const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
const TIMESTAMP_HEADER: &str = "telnyx-timestamp";

pub struct Telnyx {
    public_key: VerifyingKey,
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
        Ok(Self { public_key })
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
