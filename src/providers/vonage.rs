//! Vonage (formerly Nexmo): the SMS API and the Messages API.
//!
//! **SMS API** (<https://developer.vonage.com/en/getting-started/concepts/signing-messages>):
//! signed webhooks carry a `sig` parameter and a `timestamp` (Unix seconds). The string signed is
//! `&name=value` for every other parameter, in name order, with `&` and `=` inside values replaced
//! by `_`. With the `md5hash` method, `sig` is the hex MD5 of that string followed by the
//! signature secret (a plain hash, not an HMAC); with `md5`, `sha1`, `sha256` and `sha512` it is
//! the hex HMAC of the string keyed with the secret. Hex case varies between Vonage's SDKs, so it
//! is ignored. Some SDKs leave out parameters with blank values, so both forms are tried. The
//! timestamp must be within five minutes of now.
//! Parameters arrive in the query (GET), a form body (POST) or a JSON object (POST-JSON).
//! Inbound: `messageId`, `msisdn` (the customer), `to`, `text`, and for a long SMS delivered in
//! parts `concat=true`, `concat-ref`, `concat-part`, `concat-total` ([`reassemble`] joins them).
//! Delivery receipts (<https://developer.vonage.com/en/messaging/sms/guides/delivery-receipts>):
//! `messageId`, `status`, `err-code`.
//!
//! **Messages API** (<https://developer.vonage.com/en/getting-started/concepts/webhooks#signed-webhooks>):
//! `Authorization: Bearer <JWT>`, HS256 with the signature secret; its `payload_hash` claim is the
//! hex SHA-256 of the body, and its `iat` must be within five minutes of now. Inbound:
//! `message_uuid`, `from`, `to`, `text` with `channel` `sms`; statuses: `message_uuid`, `status`,
//! `error.title`. A Messages API channel also takes the SMS API's delivery receipts (no JWT, a
//! `sig`), checked the SMS API's way: its texts go out through the SMS API, whose receipts
//! follow.
//!
//! **Sending** (<https://developer.vonage.com/en/api/sms#send-an-sms>) always goes through the SMS
//! API: `POST /sms/json` on `https://rest.nexmo.com`, a form body carrying the credentials
//! (`api_key`, `api_secret`) with `from`, `to` (international digits, no `+`), `text`,
//! `type=unicode` when the text needs UCS-2, and `callback` for delivery receipts. Vonage
//! answers HTTP 200 even when it refuses: each part of the message has its own entry in
//! `messages` with a `status`, `"0"` for accepted, another number for a refusal
//! (<https://developer.vonage.com/en/messaging/sms/guides/troubleshooting-sms>), classified by
//! [`submission_failure`]. The message id returned is the first part's; Vonage sends a receipt
//! per part, each with its own id.

use super::send::{self, Outcome};
use super::wire::{self, JwtAlgorithm, Params};
use super::{
    DeliveryStatus, InboundMessage, OutboundSms, ParseError, PartInfo, PermanentReason, Provider,
    SendError, Sent, StatusUpdate, VerifyError, WebhookRequest,
};
use crate::config::{Secret, VonageApi, VonageChannel, VonageSignatureMethod};
use crate::sms::Encoding;
use crate::time::Timestamp;
use futures::future::BoxFuture;
use md5::{Digest, Md5};
use serde_json::Value;
use url::Url;

const API_BASE_URL: &str = "https://rest.nexmo.com";

pub struct Vonage {
    api_key: String,
    api_secret: Secret,
    signature_secret: Secret,
    method: VonageSignatureMethod,
    api: VonageApi,
    api_base_url: Option<Url>,
}

impl Vonage {
    pub fn new(config: &VonageChannel) -> Self {
        Self {
            api_key: config.api_key.clone(),
            api_secret: config.api_secret.clone(),
            signature_secret: config.signature_secret.clone(),
            method: config.signature_method,
            api: config.api,
            api_base_url: config.api_base_url.clone(),
        }
    }

    async fn send_sms(
        &self,
        client: &reqwest::Client,
        sms: OutboundSms<'_>,
    ) -> Result<Sent, SendError> {
        let url = send::endpoint(self.api_base_url.as_ref(), API_BASE_URL, "/sms/json");
        let mut form = vec![
            ("api_key", self.api_key.as_str()),
            ("api_secret", self.api_secret.expose()),
            ("from", send::digits_only(sms.from)),
            ("to", send::digits_only(sms.to)),
            ("text", sms.text),
        ];
        // Without it Vonage sends the text as GSM-7 and every other character is lost.
        if crate::sms::segments(sms.text).encoding == Encoding::Ucs2 {
            form.push(("type", "unicode"));
        }
        if let Some(callback) = sms.status_callback {
            form.push(("callback", callback));
        }
        let answer = send::call("vonage", client.post(url).form(&form)).await?;
        if !answer.status.is_success() {
            return Err(send::unsuccessful("vonage", &answer, None, None));
        }
        let body = answer
            .json()
            .ok_or_else(|| send::unreadable("vonage", "not JSON"))?;
        let parts = body
            .get("messages")
            .and_then(Value::as_array)
            .filter(|parts| !parts.is_empty())
            .ok_or_else(|| send::unreadable("vonage", "no messages"))?;
        let refused = parts
            .iter()
            .filter_map(|part| wire::json_code(part, "/status"))
            .find(|status| status != "0");
        if let Some(code) = refused {
            let code = wire::bounded(&code);
            let reason = format!("vonage refused the message with status {code}");
            return Err(match submission_failure(&code) {
                Some(Outcome::Retry) => SendError::Retryable {
                    reason,
                    retry_after: send::retry_after(&answer.headers),
                },
                mapped => SendError::Permanent {
                    reason,
                    permanent: match mapped {
                        Some(Outcome::Refused(reason)) => Some(reason),
                        _ => None,
                    },
                    code: Some(code),
                },
            });
        }
        let prices: Option<Vec<f64>> = parts
            .iter()
            .map(|part| part.get("message-price")?.as_str()?.parse().ok())
            .collect();
        Ok(Sent {
            provider_message_id: send::message_id(parts[0].get("message-id"))
                .ok_or_else(|| send::unreadable("vonage", "no message-id"))?,
            segments: send::count(body.get("message-count")).or(u32::try_from(parts.len()).ok()),
            cost: prices.map(|prices| format!("{:.8}", prices.iter().sum::<f64>())),
        })
    }

    fn verify_sms(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError> {
        let params = sms_params(request).map_err(|_| VerifyError::MalformedBody("not UTF-8"))?;
        let given = params
            .get("sig")
            .ok_or(VerifyError::MissingParameter("sig"))?
            .to_ascii_lowercase();
        let mut matched = false;
        for skip_blank in [false, true] {
            let expected = sign(
                &signing_string(&params, skip_blank),
                &self.signature_secret,
                self.method,
            );
            matched |= wire::ct_eq(given.as_bytes(), expected.as_bytes());
        }
        if !matched {
            return Err(VerifyError::SignatureMismatch);
        }
        let timestamp = params
            .get("timestamp")
            .ok_or(VerifyError::MissingParameter("timestamp"))?;
        let timestamp = timestamp
            .parse()
            .map_err(|_| VerifyError::MalformedParameter {
                parameter: "timestamp",
                reason: "not a number of seconds",
            })?;
        wire::within_window(timestamp, now, wire::REPLAY_WINDOW_SECS)
    }

    fn verify_messages(
        &self,
        request: &WebhookRequest<'_>,
        now: Timestamp,
    ) -> Result<(), VerifyError> {
        let authorization = wire::header(request, "authorization")?;
        let token = bearer(authorization).ok_or(VerifyError::MalformedHeader {
            header: "authorization",
            reason: "not a Bearer token",
        })?;
        let claims = verify_messages_jwt(token, &self.signature_secret)?;
        let payload_hash = claims
            .get("payload_hash")
            .and_then(Value::as_str)
            .ok_or(VerifyError::MissingClaim("payload_hash"))?;
        if !wire::hex_claim_matches(payload_hash, &wire::sha256(request.body)) {
            return Err(VerifyError::ClaimMismatch("payload_hash"));
        }
        let now_secs = now.as_millis() / 1000;
        if wire::claim_seconds(&claims, "exp")?.is_some_and(|exp| now_secs >= exp) {
            return Err(VerifyError::TokenExpired);
        }
        if wire::claim_seconds(&claims, "nbf")?.is_some_and(|nbf| now_secs < nbf) {
            return Err(VerifyError::TokenNotYetValid);
        }
        let issued_at =
            wire::claim_seconds(&claims, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
        wire::within_window(issued_at, now, wire::REPLAY_WINDOW_SECS)
    }
}

/// The signature layer of a Messages API JWT (HS256 with the signature secret), claims unchecked.
pub(super) fn verify_messages_jwt(
    token: &str,
    secret: &Secret,
) -> Result<serde_json::Map<String, Value>, VerifyError> {
    wire::verify_jwt(token, secret.expose().as_bytes(), &[JwtAlgorithm::Hs256])
}

fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Provider for Vonage {
    fn name(&self) -> &'static str {
        "vonage"
    }

    fn verify(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError> {
        match self.api {
            VonageApi::Sms => self.verify_sms(request, now),
            VonageApi::Messages if is_sms_api_receipt(request) => self.verify_sms(request, now),
            VonageApi::Messages => self.verify_messages(request, now),
        }
    }

    fn parse_inbound(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundMessage>, ParseError> {
        match self.api {
            VonageApi::Sms => parse_sms_inbound(&sms_params(request)?).map(|m| vec![m]),
            VonageApi::Messages => {
                parse_messages_inbound(&wire::json(request.body)?).map(|m| vec![m])
            }
        }
    }

    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError> {
        match self.api {
            VonageApi::Sms => parse_sms_receipt(&sms_params(request)?).map(|s| vec![s]),
            VonageApi::Messages if is_sms_api_receipt(request) => {
                parse_sms_receipt(&sms_params(request)?).map(|s| vec![s])
            }
            VonageApi::Messages => {
                parse_messages_status(&wire::json(request.body)?).map(|s| vec![s])
            }
        }
    }

    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        sms: OutboundSms<'a>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.send_sms(client, sms))
    }
}

/// The SMS API's submission statuses (other than `"0"`, accepted), per Vonage's SMS API error
/// table (<https://developer.vonage.com/en/api-errors/sms>).
pub(super) fn submission_failure(status: &str) -> Option<Outcome> {
    use PermanentReason::*;
    Some(match status {
        // 1 throttled, 5 Vonage's internal error, 10 too many simultaneous connections.
        "1" | "5" | "10" => Outcome::Retry,
        // "Invalid message": Vonage gives an unrecognised number prefix as the example.
        "6" => Outcome::Refused(InvalidNumber),
        // The recipient is on Vonage's barred list.
        "7" => Outcome::Refused(Blocked),
        // The number is de-activated.
        "33" => Outcome::Refused(Unreachable),
        // Our request, credentials, account, credit, sender, callback or signature.
        "2" | "3" | "4" | "8" | "9" | "11" | "12" | "14" | "15" | "22" | "23" | "29" | "32" => {
            Outcome::Refused(Other)
        }
        _ => return None,
    })
}

/// The query parameters, then those of the body, whichever of form or JSON it is.
/// A request in the SMS API's form on a Messages API channel: no JWT, a `sig` parameter. Texts
/// go out through the SMS API with a `callback`, so their delivery receipts come back in that
/// API's form, signed its way, whichever API delivers the channel's inbound messages.
fn is_sms_api_receipt(request: &WebhookRequest<'_>) -> bool {
    !request.headers.contains_key("authorization")
        && sms_params(request).is_ok_and(|params| params.get("sig").is_some())
}

fn sms_params(request: &WebhookRequest<'_>) -> Result<Params, ParseError> {
    let mut params = Params::from_query(request.url);
    if request.body.trim_ascii_start().starts_with(b"{") {
        let Value::Object(object) = wire::json(request.body)? else {
            return Err(ParseError::InvalidField {
                field: "body",
                reason: "not a JSON object",
            });
        };
        for (name, value) in object {
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            params.0.push((name, value));
        }
    } else {
        params.0.extend(Params::from_form(request.body)?.0);
    }
    Ok(params)
}

fn signing_string(params: &Params, skip_blank: bool) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .0
        .iter()
        .filter(|(name, value)| name != "sig" && !(skip_blank && value.trim().is_empty()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut signed = String::new();
    for (name, value) in pairs {
        signed.push('&');
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&value.replace(['&', '='], "_"));
    }
    signed
}

/// Lower-case hex of the signature of `signed` with `method`.
pub(super) fn sign(signed: &str, secret: &Secret, method: VonageSignatureMethod) -> String {
    let key = secret.expose().as_bytes();
    let digest = match method {
        VonageSignatureMethod::Md5Hash => {
            let mut hash = Md5::new();
            hash.update(signed.as_bytes());
            hash.update(key);
            hash.finalize().to_vec()
        }
        VonageSignatureMethod::Md5 => wire::hmac_md5(key, &[signed.as_bytes()]),
        VonageSignatureMethod::Sha1 => wire::hmac_sha1(key, &[signed.as_bytes()]),
        VonageSignatureMethod::Sha256 => wire::hmac_sha256(key, &[signed.as_bytes()]),
        VonageSignatureMethod::Sha512 => wire::hmac_sha512(key, &[signed.as_bytes()]),
    };
    hex::encode(digest)
}

/// The signature of `params` (minus `sig`), as Vonage's SDKs compute it; for tests.
#[cfg(test)]
pub(super) fn sign_params(
    params: &[(&str, &str)],
    secret: &Secret,
    method: VonageSignatureMethod,
) -> String {
    let params = Params(
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    sign(&signing_string(&params, false), secret, method)
}

fn parse_sms_inbound(params: &Params) -> Result<InboundMessage, ParseError> {
    if params.get("text").is_none() && params.get("err-code").is_some() {
        return Err(ParseError::UnexpectedKind("delivery receipt".into()));
    }
    if let Some(kind @ ("binary" | "vcard" | "vcal")) = params.get("type") {
        return Err(ParseError::UnexpectedKind(kind.to_string()));
    }
    let part = if params.get("concat") == Some("true") {
        let number = |field: &'static str| -> Result<u16, ParseError> {
            params
                .require_non_empty(field)?
                .parse()
                .map_err(|_| ParseError::InvalidField {
                    field,
                    reason: "not a part number",
                })
        };
        let (index, total) = (number("concat-part")?, number("concat-total")?);
        if index == 0 || total == 0 || index > total {
            return Err(ParseError::InvalidField {
                field: "concat-part",
                reason: "not between 1 and concat-total",
            });
        }
        // A "concatenated" message of one part is a whole message.
        (total > 1)
            .then(|| -> Result<PartInfo, ParseError> {
                Ok(PartInfo {
                    reference: params.require_non_empty("concat-ref")?.to_string(),
                    index,
                    total,
                })
            })
            .transpose()?
    } else {
        None
    };
    Ok(InboundMessage {
        provider_message_id: params.require_non_empty("messageId")?.to_string(),
        from: wire::normalise_address(params.require_non_empty("msisdn")?),
        to: wire::normalise_address(params.require_non_empty("to")?),
        text: params.require("text")?.to_string(),
        part,
    })
}

fn parse_sms_receipt(params: &Params) -> Result<StatusUpdate, ParseError> {
    let raw_status = params.require_non_empty("status")?;
    let error_code = params
        .get("err-code")
        .filter(|c| !c.is_empty() && *c != "0");
    Ok(StatusUpdate {
        provider_message_id: params.require_non_empty("messageId")?.to_string(),
        status: receipt_status(raw_status, error_code)?,
        error_code: error_code.map(str::to_string),
        raw_status: raw_status.to_string(),
    })
}

/// The SMS API's receipt statuses; a failure's kind comes from its `err-code`.
pub(super) fn receipt_status(
    raw: &str,
    err_code: Option<&str>,
) -> Result<DeliveryStatus, ParseError> {
    use DeliveryStatus::*;
    let failure = err_code.and_then(receipt_failure);
    Ok(match raw {
        "delivered" => Delivered,
        "accepted" | "buffered" => Sent,
        // No final word from the carrier: still on its way unless a code says otherwise.
        "unknown" => failure.unwrap_or(Sent),
        "expired" | "failed" | "rejected" => failure.unwrap_or(FailedTemporary),
        other => return Err(ParseError::UnknownStatus(wire::bounded(other))),
    })
}

/// Receipt `err-code`s, per Vonage's delivery receipt guide.
pub(super) fn receipt_failure(code: &str) -> Option<DeliveryStatus> {
    use DeliveryStatus::*;
    use PermanentReason::*;
    Some(match code {
        // 1 unknown, 2 absent (temporary), 5 portability, 7 busy, 8 network, 15 prepaid
        // funds, 99 general: all may pass.
        "1" | "2" | "5" | "7" | "8" | "15" | "99" => FailedTemporary,
        // 3 absent for good, 11 unroutable, 12 destination unreachable.
        "3" | "11" | "12" => FailedPermanent(Unreachable),
        // 4 barred by the user, 6 anti-spam, 13 age restriction, 14 blocked by the carrier,
        // 50–53 entity, header, content and consent filters.
        "4" | "6" | "13" | "14" | "50" | "51" | "52" | "53" => FailedPermanent(Blocked),
        // "Illegal number": the recipient asked not to receive messages from this service.
        "9" => FailedPermanent(OptedOutAtCarrier),
        // 10 illegal message, 54 regulation: our content or registration.
        "10" | "54" => FailedPermanent(Other),
        _ => return None,
    })
}

/// An address the Messages API writes as a string, or (older versions) as `{"number": …}`.
fn messages_address(value: &Value, field: &'static str) -> Result<String, ParseError> {
    let raw = match value.get(field) {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(o)) => o
            .get("number")
            .and_then(Value::as_str)
            .ok_or(ParseError::MissingField(field))?,
        Some(_) => {
            return Err(ParseError::InvalidField {
                field,
                reason: "not a string",
            });
        }
        None => return Err(ParseError::MissingField(field)),
    };
    Ok(wire::normalise_address(raw))
}

fn parse_messages_inbound(body: &Value) -> Result<InboundMessage, ParseError> {
    if body.get("status").is_some() {
        return Err(ParseError::UnexpectedKind("status".into()));
    }
    let channel = wire::json_str(body, "/channel", "channel")?;
    if channel != "sms" {
        return Err(ParseError::UnexpectedKind(wire::bounded(channel)));
    }
    if let Some(kind) = body.get("message_type").and_then(Value::as_str) {
        if kind != "text" {
            return Err(ParseError::UnexpectedKind(wire::bounded(kind)));
        }
    }
    Ok(InboundMessage {
        provider_message_id: wire::json_str(body, "/message_uuid", "message_uuid")?.to_string(),
        from: messages_address(body, "from")?,
        to: messages_address(body, "to")?,
        text: wire::json_str(body, "/text", "text")?.to_string(),
        part: None,
    })
}

fn parse_messages_status(body: &Value) -> Result<StatusUpdate, ParseError> {
    let raw_status = wire::json_str(body, "/status", "status")?;
    Ok(StatusUpdate {
        provider_message_id: wire::json_str(body, "/message_uuid", "message_uuid")?.to_string(),
        status: messages_status(raw_status)?,
        error_code: wire::json_code(body, "/error/title"),
        raw_status: raw_status.to_string(),
    })
}

/// The Messages API's statuses (its error codes are not classified: they describe our request
/// more than the number).
pub(super) fn messages_status(raw: &str) -> Result<DeliveryStatus, ParseError> {
    use DeliveryStatus::*;
    Ok(match raw {
        "submitted" => Sent,
        "delivered" | "read" => Delivered,
        "rejected" => FailedPermanent(PermanentReason::Other),
        "undeliverable" => FailedTemporary,
        other => return Err(ParseError::UnknownStatus(wire::bounded(other))),
    })
}

/// Joins the parts of a concatenated SMS once all are there: the parts of `parts[0]`'s message
/// (same sender, recipient, reference and total) in index order, under the first part's id.
/// `None` while a part is missing. Parts of other messages are ignored, and a part received
/// twice (a provider retry) counts once.
pub fn reassemble(parts: &[InboundMessage]) -> Option<InboundMessage> {
    let first = parts.first()?;
    let info = first.part.as_ref()?;
    let belongs = |m: &&InboundMessage| {
        m.from == first.from
            && m.to == first.to
            && m.part
                .as_ref()
                .is_some_and(|p| p.reference == info.reference && p.total == info.total)
    };
    let mine: Vec<&InboundMessage> = parts.iter().filter(belongs).collect();
    let mut ordered = Vec::with_capacity(usize::from(info.total));
    for index in 1..=info.total {
        let part = mine
            .iter()
            .find(|m| m.part.as_ref().is_some_and(|p| p.index == index))?;
        ordered.push(*part);
    }
    let head = ordered.first()?;
    Some(InboundMessage {
        provider_message_id: head.provider_message_id.clone(),
        from: head.from.clone(),
        to: head.to.clone(),
        text: ordered.iter().map(|m| m.text.as_str()).collect(),
        part: None,
    })
}
