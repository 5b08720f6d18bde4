//! Sinch SMS REST API callbacks (<https://developers.sinch.com/docs/sms/api-reference/sms/tag/Webhooks/>).
//!
//! Signature (HMAC callbacks, set up with Sinch): `x-sinch-webhook-signature` is the base64
//! HMAC-SHA256, keyed with the agreed secret, of `<raw body>.<nonce>.<timestamp>`, the nonce and
//! timestamp (Unix seconds) coming from `x-sinch-webhook-signature-nonce` and
//! `x-sinch-webhook-signature-timestamp`; `x-sinch-webhook-signature-algorithm`, when present,
//! must say `HmacSHA256`. The timestamp must be within five minutes of now.
//!
//! Payloads: JSON with a `type`. `mo_text` is an inbound message (`id`, `from`, `to`, `body`);
//! `recipient_delivery_report_sms` reports delivery of a batch to one recipient (`batch_id`,
//! `status`, `code`, <https://developers.sinch.com/docs/sms/api-reference/status-codes/>). A
//! batch holds one recipient when hearback sends, so the batch id is the message id.
//!
//! Sending (<https://developers.sinch.com/docs/sms/api-reference/sms/tag/Batches/>):
//! `POST /xms/v1/{service_plan_id}/batches` on `https://us.sms.api.sinch.com` (set `api_base_url`
//! to `https://eu.sms.api.sinch.com` or another region's address for accounts hosted there),
//! `Authorization: Bearer <api_token>`, a JSON body `from`, `to` (a list of one number), `body`,
//! `delivery_report` `per_recipient` (the report the status webhook parses) and `callback_url`.
//! Sinch answers 201 with the batch (`id`); a refusal is `{"code", "text"}`
//! (<https://developers.sinch.com/docs/sms/api-reference/status-codes/>). Sinch checks only the
//! number's format when the batch is created: `syntax_invalid_parameter_format` whose text is
//! about the recipient is an invalid number; the rest (landline, unreachable) come in delivery
//! reports.

use super::send::{self, Outcome};
use super::wire;
use super::{
    DeliveryStatus, InboundMessage, OutboundSms, ParseError, PermanentReason, Provider, SendError,
    Sent, StatusUpdate, VerifyError, WebhookRequest,
};
use crate::config::{Secret, SinchChannel};
use crate::time::Timestamp;
use futures::future::BoxFuture;
use serde_json::json;
use url::Url;

const API_BASE_URL: &str = "https://us.sms.api.sinch.com";

const SIGNATURE_HEADER: &str = "x-sinch-webhook-signature";
const ALGORITHM_HEADER: &str = "x-sinch-webhook-signature-algorithm";
const NONCE_HEADER: &str = "x-sinch-webhook-signature-nonce";
const TIMESTAMP_HEADER: &str = "x-sinch-webhook-signature-timestamp";

pub struct Sinch {
    secret: Secret,
    service_plan_id: String,
    api_token: Secret,
    api_base_url: Option<Url>,
}

impl Sinch {
    pub fn new(config: &SinchChannel) -> Self {
        Self {
            secret: config.webhook_secret.clone(),
            service_plan_id: config.service_plan_id.clone(),
            api_token: config.api_token.clone(),
            api_base_url: config.api_base_url.clone(),
        }
    }

    async fn send_sms(
        &self,
        client: &reqwest::Client,
        sms: OutboundSms<'_>,
    ) -> Result<Sent, SendError> {
        let url = send::endpoint(
            self.api_base_url.as_ref(),
            API_BASE_URL,
            &format!(
                "/xms/v1/{}/batches",
                send::path_segment(&self.service_plan_id)
            ),
        );
        let mut body = json!({
            "from": sms.from, "to": [sms.to], "body": sms.text,
            "delivery_report": "per_recipient",
        });
        if let Some(callback) = sms.status_callback {
            body["callback_url"] = json!(callback);
        }
        let request = client
            .post(url)
            .bearer_auth(self.api_token.expose())
            .json(&body);
        let answer = send::call("sinch", request).await?;
        let body = answer.json();
        if !answer.status.is_success() {
            let code = body
                .as_ref()
                .and_then(|b| wire::json_code(b, "/code"))
                .map(|c| wire::bounded(&c));
            let text = body.as_ref().and_then(|b| b.get("text")?.as_str());
            let mapped = code.as_deref().and_then(|code| refusal(code, text));
            return Err(send::unsuccessful("sinch", &answer, code, mapped));
        }
        let body = body.ok_or_else(|| send::unreadable("sinch", "not JSON"))?;
        Ok(Sent {
            provider_message_id: send::message_id(body.get("id"))
                .ok_or_else(|| send::unreadable("sinch", "no id"))?,
            segments: None,
            cost: None,
        })
    }
}

impl Provider for Sinch {
    fn name(&self) -> &'static str {
        "sinch"
    }

    fn verify(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError> {
        match wire::header(request, ALGORITHM_HEADER) {
            Ok(algorithm) if !algorithm.eq_ignore_ascii_case("HmacSHA256") => {
                return Err(VerifyError::UnsupportedAlgorithm(wire::bounded(algorithm)));
            }
            Err(error @ VerifyError::MalformedHeader { .. }) => return Err(error),
            _ => {}
        }
        let given =
            wire::decode_base64(wire::header(request, SIGNATURE_HEADER)?, SIGNATURE_HEADER)?;
        let nonce = wire::header(request, NONCE_HEADER)?;
        let timestamp = wire::header(request, TIMESTAMP_HEADER)?;
        let signed_at = wire::unix_seconds(timestamp, TIMESTAMP_HEADER)?;
        let expected = wire::hmac_sha256(
            self.secret.expose().as_bytes(),
            &[
                request.body,
                b".",
                nonce.as_bytes(),
                b".",
                timestamp.as_bytes(),
            ],
        );
        if !wire::ct_eq(&given, &expected) {
            return Err(VerifyError::SignatureMismatch);
        }
        wire::within_window(signed_at, now, wire::REPLAY_WINDOW_SECS)
    }

    fn parse_inbound(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundMessage>, ParseError> {
        let body = wire::json(request.body)?;
        let kind = wire::json_str(&body, "/type", "type")?;
        if kind != "mo_text" {
            return Err(ParseError::UnexpectedKind(wire::bounded(kind)));
        }
        Ok(vec![InboundMessage {
            provider_message_id: wire::json_str(&body, "/id", "id")?.to_string(),
            from: wire::normalise_address(wire::json_str(&body, "/from", "from")?),
            to: wire::normalise_address(wire::json_str(&body, "/to", "to")?),
            text: wire::json_str(&body, "/body", "body")?.to_string(),
            part: None,
        }])
    }

    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError> {
        let body = wire::json(request.body)?;
        let kind = wire::json_str(&body, "/type", "type")?;
        if kind != "recipient_delivery_report_sms" {
            return Err(ParseError::UnexpectedKind(wire::bounded(kind)));
        }
        let raw_status = wire::json_str(&body, "/status", "status")?;
        let code = wire::json_code(&body, "/code");
        Ok(vec![StatusUpdate {
            provider_message_id: wire::json_str(&body, "/batch_id", "batch_id")?.to_string(),
            status: status(raw_status, code.as_deref())?,
            error_code: code.filter(|c| c != "0"),
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

/// Sinch's error codes are words; the text is read to tell which field was malformed, never
/// repeated (it may quote the number).
fn refusal(code: &str, text: Option<&str>) -> Option<Outcome> {
    let text = text.unwrap_or("").to_ascii_lowercase();
    let about_recipient = ["recipient", "msisdn", "'to'", "\"to\"", "phone number"]
        .iter()
        .any(|word| text.contains(word));
    match code {
        "syntax_invalid_parameter_format" if about_recipient => {
            Some(Outcome::Refused(PermanentReason::InvalidNumber))
        }
        _ => None,
    }
}

/// Sinch's delivery report statuses; a failure's kind comes from its code.
pub(super) fn status(raw: &str, code: Option<&str>) -> Result<DeliveryStatus, ParseError> {
    use DeliveryStatus::*;
    Ok(match raw {
        "Queued" => Queued,
        "Dispatched" => Sent,
        // Sinch had no final word from the operator: still on its way.
        "Unknown" => Sent,
        "Delivered" => Delivered,
        "Expired" => FailedTemporary,
        "Failed" => code.and_then(failure).unwrap_or(FailedTemporary),
        "Rejected" => code
            .and_then(failure)
            .unwrap_or(FailedPermanent(PermanentReason::Other)),
        // Stopped on our side (cancelled, aborted, deleted before sending).
        "Aborted" | "Cancelled" | "Deleted" => FailedPermanent(PermanentReason::Other),
        other => return Err(ParseError::UnknownStatus(wire::bounded(other))),
    })
}

/// Sinch delivery report codes, per `fixtures/providers/sinch/delivery_report_codes.json`.
pub(super) fn failure(code: &str) -> Option<DeliveryStatus> {
    use DeliveryStatus::*;
    use PermanentReason::*;
    Some(match code {
        "402" => FailedPermanent(Unreachable),
        // 403 internal error, 404 temporary delivery failure, 406 internal expiry.
        "403" | "404" | "406" => FailedTemporary,
        // Our request or account: parameters, cancellation, originator, parts limit, region,
        // account blocked, MMS media and reports.
        "405" | "407" | "408" | "410" | "411" | "412" | "413" | "414" | "415" | "416" | "417"
        | "418" => FailedPermanent(Other),
        _ => return None,
    })
}
