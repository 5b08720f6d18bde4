//! Plivo messaging webhooks (<https://www.plivo.com/docs/messaging/concepts/signature-validation>).
//!
//! **V2**: `X-Plivo-Signature-V2` is the base64 HMAC-SHA256, keyed with the auth token, of the URL
//! without its query string followed by the `X-Plivo-Signature-V2-Nonce` header. It is what Plivo
//! sends for messaging callbacks; it signs neither the parameters nor a time, so the body is
//! authenticated only by the channel's secrecy of its URL, and replays are absorbed by
//! de-duplication on `MessageUUID`. Choose V3 where the account sends it.
//!
//! **V3**: `X-Plivo-Signature-V3` (several signatures may be listed, comma-separated) is the
//! base64 HMAC-SHA256 of `<base>.<nonce>`, the nonce from `X-Plivo-Signature-V3-Nonce`. For a
//! POST, `base` is the URL without its query, then `?` and the query parameters sorted as
//! `name=value` joined by `&`, then (if there was a query) `.`, then every body parameter sorted
//! as `namevalue`; for a GET, the query parameters alone, sorted as `name=value&…`. With no
//! parameters at all, `base` is the bare URL.
//!
//! Payloads (<https://www.plivo.com/docs/messaging/api/message/message-status-callbacks>): form or
//! query parameters; inbound `MessageUUID`, `From`, `To`, `Text`, `Type`; statuses `MessageUUID`,
//! `Status`, `ErrorCode`
//! (<https://www.plivo.com/docs/messaging/troubleshooting/error-codes>).
//!
//! Sending (<https://www.plivo.com/docs/messaging/api/message/send-a-message>):
//! `POST /v1/Account/{auth_id}/Message/` on `https://api.plivo.com`, HTTP basic authentication
//! with the auth ID and the auth token, a JSON body `src`, `dst`, `text`, `type` (`sms`) and,
//! for delivery statuses, `url` with `method` `POST`. Plivo answers 202 with
//! `{"api_id", "message", "message_uuid": ["…"]}`; a refusal is `{"api_id", "error": "…"}`, a
//! sentence without a code: one that names the destination (`dst`) as invalid is read as an
//! invalid number, and delivery-level failures (landline, opt-out, …) come later in status
//! callbacks. Plivo reads `<` in `dst` as a separator between several recipients, so a `to`
//! containing one is refused before any call.

use super::send::{self, Outcome};
use super::wire::{self, Params};
use super::{
    DeliveryStatus, InboundMessage, OutboundSms, ParseError, PermanentReason, Provider, SendError,
    Sent, StatusUpdate, VerifyError, WebhookRequest,
};
use crate::config::{PlivoChannel, PlivoSignatureVersion, Secret};
use crate::time::Timestamp;
use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use url::Url;

const API_BASE_URL: &str = "https://api.plivo.com";

const V2_SIGNATURE: &str = "x-plivo-signature-v2";
const V2_NONCE: &str = "x-plivo-signature-v2-nonce";
const V3_SIGNATURE: &str = "x-plivo-signature-v3";
const V3_NONCE: &str = "x-plivo-signature-v3-nonce";

pub struct Plivo {
    auth_id: String,
    auth_token: Secret,
    version: PlivoSignatureVersion,
    api_base_url: Option<Url>,
}

impl Plivo {
    pub fn new(config: &PlivoChannel) -> Self {
        Self {
            auth_id: config.auth_id.clone(),
            auth_token: config.auth_token.clone(),
            version: config.signature_version,
            api_base_url: config.api_base_url.clone(),
        }
    }

    async fn send_sms(
        &self,
        client: &reqwest::Client,
        sms: OutboundSms<'_>,
    ) -> Result<Sent, SendError> {
        if sms.to.contains('<') {
            return Err(SendError::Permanent {
                reason: "plivo: the recipient contains '<', Plivo's recipient separator".into(),
                code: None,
                permanent: Some(PermanentReason::InvalidNumber),
            });
        }
        let url = send::endpoint(
            self.api_base_url.as_ref(),
            API_BASE_URL,
            &format!("/v1/Account/{}/Message/", send::path_segment(&self.auth_id)),
        );
        let mut body = json!({"src": sms.from, "dst": sms.to, "text": sms.text, "type": "sms"});
        if let Some(callback) = sms.status_callback {
            body["url"] = json!(callback);
            body["method"] = json!("POST");
        }
        let request = client
            .post(url)
            .basic_auth(&self.auth_id, Some(self.auth_token.expose()))
            .json(&body);
        let answer = send::call("plivo", request).await?;
        let body = answer.json();
        if !answer.status.is_success() {
            let mapped = body
                .as_ref()
                .and_then(|b| b.get("error")?.as_str())
                .and_then(refusal);
            return Err(send::unsuccessful("plivo", &answer, None, mapped));
        }
        let body = body.ok_or_else(|| send::unreadable("plivo", "not JSON"))?;
        let id = match body.get("message_uuid") {
            Some(Value::Array(ids)) => send::message_id(ids.first()),
            other => send::message_id(other),
        };
        Ok(Sent {
            provider_message_id: id.ok_or_else(|| send::unreadable("plivo", "no message_uuid"))?,
            segments: None,
            cost: None,
        })
    }

    fn expected(&self, signed: &str) -> String {
        STANDARD.encode(wire::hmac_sha256(
            self.auth_token.expose().as_bytes(),
            &[signed.as_bytes()],
        ))
    }
}

impl Provider for Plivo {
    fn name(&self) -> &'static str {
        "plivo"
    }

    fn verify(&self, request: &WebhookRequest<'_>, _now: Timestamp) -> Result<(), VerifyError> {
        let (signature_header, nonce_header) = match self.version {
            PlivoSignatureVersion::V2 => (V2_SIGNATURE, V2_NONCE),
            PlivoSignatureVersion::V3 => (V3_SIGNATURE, V3_NONCE),
        };
        let given = wire::header(request, signature_header)?;
        let nonce = wire::header(request, nonce_header)?;
        let signed = match self.version {
            PlivoSignatureVersion::V2 => format!("{}{nonce}", wire::without_query(request.url)),
            PlivoSignatureVersion::V3 => format!("{}.{nonce}", v3_base(request)?),
        };
        let expected = self.expected(&signed);
        let mut matched = false;
        for candidate in given.split(',') {
            matched |= wire::ct_eq(candidate.trim().as_bytes(), expected.as_bytes());
        }
        if matched {
            Ok(())
        } else {
            Err(VerifyError::SignatureMismatch)
        }
    }

    fn parse_inbound(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundMessage>, ParseError> {
        let params = params(request)?;
        if params.get("Text").is_none() && params.get("Status").is_some() {
            return Err(ParseError::UnexpectedKind("status callback".into()));
        }
        if let Some(kind) = params
            .get("Type")
            .filter(|t| !t.eq_ignore_ascii_case("sms"))
        {
            return Err(ParseError::UnexpectedKind(wire::bounded(kind)));
        }
        Ok(vec![InboundMessage {
            provider_message_id: params.require_non_empty("MessageUUID")?.to_string(),
            from: wire::normalise_address(params.require_non_empty("From")?),
            to: wire::normalise_address(params.require_non_empty("To")?),
            text: params.require("Text")?.to_string(),
            part: None,
        }])
    }

    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError> {
        let params = params(request)?;
        let raw_status = params.require_non_empty("Status")?;
        let error_code = params
            .get("ErrorCode")
            .filter(|c| !c.is_empty() && *c != "000");
        Ok(vec![StatusUpdate {
            provider_message_id: params.require_non_empty("MessageUUID")?.to_string(),
            status: status(raw_status, error_code)?,
            error_code: error_code.map(str::to_string),
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

/// Plivo's refusals carry a sentence, not a code; the sentence is read, never repeated (it may
/// quote the number).
fn refusal(error: &str) -> Option<Outcome> {
    let error = error.to_ascii_lowercase();
    let about_destination = error.contains("dst") || error.contains("destination");
    (about_destination && error.contains("invalid"))
        .then_some(Outcome::Refused(PermanentReason::InvalidNumber))
}

/// Query parameters, then form parameters (Plivo calls back with GET or POST as configured).
fn params(request: &WebhookRequest<'_>) -> Result<Params, ParseError> {
    let mut params = Params::from_query(request.url);
    params.0.extend(Params::from_form(request.body)?.0);
    Ok(params)
}

/// First value of each name, in name order, as Plivo's SDKs build their maps.
fn sorted_map(params: Params) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (name, value) in params.0 {
        map.entry(name).or_insert(value);
    }
    map
}

fn v3_base(request: &WebhookRequest<'_>) -> Result<String, VerifyError> {
    let query = sorted_map(Params::from_query(request.url));
    let body = if *request.method == Method::GET {
        BTreeMap::new()
    } else {
        sorted_map(
            Params::from_form(request.body).map_err(|_| VerifyError::MalformedBody("not UTF-8"))?,
        )
    };
    let as_query = |map: &BTreeMap<String, String>| {
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let concatenated = |map: &BTreeMap<String, String>| {
        map.iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect::<String>()
    };
    let mut base = wire::without_query(request.url).to_string();
    if query.is_empty() && body.is_empty() {
        return Ok(base);
    }
    base.push('?');
    if *request.method == Method::GET {
        base.push_str(&as_query(&query));
    } else if query.is_empty() {
        base.push_str(&concatenated(&body));
    } else {
        base.push_str(&as_query(&query));
        base.push('.');
        base.push_str(&concatenated(&body));
    }
    Ok(base)
}

/// Plivo's message states; a failure's kind comes from its error code.
pub(super) fn status(raw: &str, error_code: Option<&str>) -> Result<DeliveryStatus, ParseError> {
    use DeliveryStatus::*;
    Ok(match raw {
        "queued" => Queued,
        "sent" => Sent,
        "delivered" | "read" => Delivered,
        "undelivered" => error_code.and_then(failure).unwrap_or(FailedTemporary),
        // "failed" and "rejected" never reached a carrier: our side unless a code says more.
        "failed" | "rejected" => error_code
            .and_then(failure)
            .unwrap_or(FailedPermanent(PermanentReason::Other)),
        other => return Err(ParseError::UnknownStatus(wire::bounded(other))),
    })
}

/// Plivo's error codes. 10–50 are from Plivo's error-code page; the others are classified from
/// their titles in `fixtures/providers/plivo/message_callbacks.json`, marked unverified there.
pub(super) fn failure(code: &str) -> Option<DeliveryStatus> {
    use DeliveryStatus::*;
    use PermanentReason::*;
    Some(match code {
        "20" | "80" | "300" | "420" | "1000" => FailedTemporary,
        "30" | "100" => FailedPermanent(Blocked),
        "50" => FailedPermanent(InvalidNumber),
        "70" | "90" => FailedPermanent(Unreachable),
        "200" => FailedPermanent(OptedOutAtCarrier),
        "10" | "40" | "60" | "110" | "450" | "900" => FailedPermanent(Other),
        _ => return None,
    })
}
