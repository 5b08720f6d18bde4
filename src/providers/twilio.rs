//! Twilio Programmable Messaging webhooks.
//!
//! Signature (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>): the
//! `X-Twilio-Signature` header is the base64 HMAC-SHA1, keyed with the account's auth token, of
//! the full URL Twilio called followed, for a form POST, by every parameter's name and value
//! concatenated in name order (a name sent several times contributes its values sorted, once
//! each). A JSON request is signed over the URL alone, whose `bodySHA256` query parameter is the
//! hex SHA-256 of the body. Twilio may sign the URL with or without the scheme's default port
//! (`:443`, `:80`), so both forms are tried. Twilio signs no timestamp, so there is no replay
//! window; de-duplication on the message SID absorbs replays.
//!
//! Payloads (<https://www.twilio.com/docs/messaging/guides/webhook-request>): inbound `MessageSid`,
//! `From`, `To`, `Body` (Twilio joins long SMS itself); status callbacks `MessageSid`,
//! `MessageStatus` and, on failure, `ErrorCode`
//! (<https://www.twilio.com/docs/api/errors>).
//!
//! Sending (<https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource>):
//! `POST /2010-04-01/Accounts/{account_sid}/Messages.json` on `https://api.twilio.com`, HTTP
//! basic authentication with the account SID and the auth token, a form body `To`, `From`,
//! `Body` and `StatusCallback`. Twilio answers 201 with the message resource (`sid`,
//! `num_segments`, `price`, `price_unit`); an error is `{"code", "message", "status"}`, its code
//! classified with the same table as delivery failures (21211 invalid number, 21614 not a
//! mobile, 21610 unsubscribed, …).

use super::send::{self, Outcome};
use super::wire::{self, Params};
use super::{
    DeliveryStatus, InboundMessage, Lookup, OutboundSms, ParseError, PermanentReason, Provider,
    SendError, Sent, StatusUpdate, VerifyError, WebhookRequest,
};
use crate::config::{Secret, TwilioChannel};
use crate::time::Timestamp;
use futures::future::BoxFuture;
use url::Url;

const API_BASE_URL: &str = "https://api.twilio.com";

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

pub struct Twilio {
    account_sid: String,
    auth_token: Secret,
    api_base_url: Option<Url>,
}

impl Twilio {
    pub fn new(config: &TwilioChannel) -> Self {
        Self {
            account_sid: config.account_sid.clone(),
            auth_token: config.auth_token.clone(),
            api_base_url: config.api_base_url.clone(),
        }
    }

    async fn send_sms(
        &self,
        client: &reqwest::Client,
        sms: OutboundSms<'_>,
    ) -> Result<Sent, SendError> {
        let url = self.messages_url();
        let mut form = vec![("To", sms.to), ("From", sms.from), ("Body", sms.text)];
        if let Some(callback) = sms.status_callback {
            form.push(("StatusCallback", callback));
        }
        let request = client
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&form);
        let answer = send::call("twilio", request).await?;
        let body = answer.json();
        if !answer.status.is_success() {
            let code = body.as_ref().and_then(|b| wire::json_code(b, "/code"));
            let mapped = code
                .as_deref()
                .and_then(failure)
                .and_then(Outcome::from_delivery);
            return Err(send::unsuccessful("twilio", &answer, code, mapped));
        }
        let body = body.ok_or_else(|| send::unreadable("twilio", "not JSON"))?;
        Ok(Sent {
            provider_message_id: send::message_id(body.get("sid"))
                .ok_or_else(|| send::unreadable("twilio", "no sid"))?,
            segments: send::count(body.get("num_segments")),
            cost: send::cost(
                body.get("price").and_then(|p| p.as_str()),
                body.get("price_unit").and_then(|p| p.as_str()),
            ),
        })
    }
}

impl Twilio {
    /// The account's Messages resource: POST sends, GET lists.
    fn messages_url(&self) -> String {
        send::endpoint(
            self.api_base_url.as_ref(),
            API_BASE_URL,
            &format!(
                "/2010-04-01/Accounts/{}/Messages.json",
                send::path_segment(&self.account_sid)
            ),
        )
    }

    /// Lists the latest messages from `sms.from` to `sms.to` (newest first, queued ones
    /// included) and looks for one with the same text created at or after `since`. A match whose
    /// creation date cannot be read makes the answer "cannot tell".
    async fn find(
        &self,
        client: &reqwest::Client,
        sms: OutboundSms<'_>,
        since: Timestamp,
    ) -> Result<Lookup, SendError> {
        let url = self.messages_url();
        let request = client
            .get(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .query(&[("To", sms.to), ("From", sms.from), ("PageSize", "50")]);
        let answer = send::call("twilio", request).await?;
        let body = answer.json();
        if !answer.status.is_success() {
            let code = body.as_ref().and_then(|b| wire::json_code(b, "/code"));
            return Err(send::unsuccessful("twilio", &answer, code, None));
        }
        let body = body.ok_or_else(|| send::unreadable("twilio", "not JSON"))?;
        let same_text = body
            .get("messages")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter(|m| m.get("body").and_then(serde_json::Value::as_str) == Some(sms.text));
        for message in same_text {
            // An earlier message with the same text (a survey sent before) is not this one.
            let created = message
                .get("date_created")
                .and_then(serde_json::Value::as_str)
                .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
            match created {
                None => return Ok(Lookup::Unsupported),
                Some(created) if created.timestamp_millis() < since.as_millis() => continue,
                Some(_) => {
                    return Ok(Lookup::Found(Sent {
                        provider_message_id: send::message_id(message.get("sid"))
                            .ok_or_else(|| send::unreadable("twilio", "no sid"))?,
                        segments: send::count(message.get("num_segments")),
                        cost: None,
                    }));
                }
            }
        }
        Ok(Lookup::NotFound)
    }
}

impl Provider for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn verify(&self, request: &WebhookRequest<'_>, _now: Timestamp) -> Result<(), VerifyError> {
        let given = wire::header(request, SIGNATURE_HEADER)?;
        let given = wire::decode_base64(given, SIGNATURE_HEADER)?;
        let query = Params::from_query(request.url);
        let signed_params = match query.get("bodySHA256") {
            Some(claimed) => {
                if !wire::hex_claim_matches(claimed, &wire::sha256(request.body)) {
                    return Err(VerifyError::BodyHashMismatch);
                }
                String::new()
            }
            None => {
                let form = Params::from_form(request.body)
                    .map_err(|_| VerifyError::MalformedBody("not UTF-8"))?;
                sorted_concatenation(&form)
            }
        };
        let mut matched = false;
        for url in url_variants(request.url)? {
            let expected = wire::hmac_sha1(
                self.auth_token.expose().as_bytes(),
                &[url.as_bytes(), signed_params.as_bytes()],
            );
            // Every variant is computed and compared, so timing does not tell which one matched.
            matched |= wire::ct_eq(&given, &expected);
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
        let form = Params::from_form(request.body)?;
        if form.get("Body").is_none() && form.get("MessageStatus").is_some() {
            return Err(ParseError::UnexpectedKind("status callback".into()));
        }
        Ok(vec![InboundMessage {
            provider_message_id: form.require_non_empty("MessageSid")?.to_string(),
            from: wire::normalise_address(form.require_non_empty("From")?),
            to: wire::normalise_address(form.require_non_empty("To")?),
            text: form.require("Body")?.to_string(),
            part: None,
        }])
    }

    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError> {
        let form = Params::from_form(request.body)?;
        let raw_status = form.require_non_empty("MessageStatus")?;
        let error_code = form
            .get("ErrorCode")
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        Ok(vec![StatusUpdate {
            provider_message_id: form.require_non_empty("MessageSid")?.to_string(),
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

    fn find_sent<'a>(
        &'a self,
        client: &'a reqwest::Client,
        sms: OutboundSms<'a>,
        since: Timestamp,
    ) -> BoxFuture<'a, Result<Lookup, SendError>> {
        Box::pin(self.find(client, sms, since))
    }
}

/// `name value` pairs sorted by name; a repeated name's values sorted and de-duplicated.
fn sorted_concatenation(params: &Params) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()
}

/// The URL as given, and the same with its default port added or removed.
fn url_variants(url: &str) -> Result<Vec<String>, VerifyError> {
    let (scheme, rest) = url.split_once("://").ok_or(VerifyError::MalformedUrl)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err(VerifyError::MalformedUrl),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The port follows the host, which follows any `user:pass@`; an IPv6 host ends with `]`.
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_port = &authority[host_start..];
    let port_colon = host_port
        .rfind(':')
        .filter(|&colon| !host_port[colon..].contains(']'));
    let other = match port_colon {
        Some(colon) if &host_port[colon + 1..] == default_port => {
            format!("{scheme}://{}{tail}", &authority[..host_start + colon])
        }
        Some(_) => return Ok(vec![url.to_string()]),
        None => format!("{scheme}://{authority}:{default_port}{tail}"),
    };
    Ok(vec![url.to_string(), other])
}

/// Twilio's message statuses; a failure's kind comes from its error code.
pub(super) fn status(raw: &str, error_code: Option<&str>) -> Result<DeliveryStatus, ParseError> {
    use DeliveryStatus::*;
    Ok(match raw {
        "accepted" | "scheduled" | "queued" | "sending" => Queued,
        "sent" => Sent,
        "delivered" | "read" => Delivered,
        "canceled" => FailedPermanent(PermanentReason::Other),
        "undelivered" | "failed" => match error_code.and_then(failure) {
            Some(status) => status,
            // Without a known code: "failed" never left Twilio (our side), "undelivered" was
            // refused downstream and may pass.
            None if raw == "failed" => FailedPermanent(PermanentReason::Other),
            None => FailedTemporary,
        },
        other => return Err(ParseError::UnknownStatus(wire::bounded(other))),
    })
}

/// Twilio error codes, classified as in `fixtures/providers/twilio/error_codes.json`.
pub(super) fn failure(code: &str) -> Option<DeliveryStatus> {
    use DeliveryStatus::*;
    use PermanentReason::*;
    Some(match code {
        "21211" | "21614" | "30005" => FailedPermanent(InvalidNumber),
        "21635" | "30006" => FailedPermanent(Landline),
        // "Not currently reachable via SMS": the number is valid but has no SMS route.
        "21612" => FailedPermanent(Unreachable),
        "21610" => FailedPermanent(OptedOutAtCarrier),
        "30004" | "30007" => FailedPermanent(Blocked),
        "30002" | "21408" | "21608" => FailedPermanent(Other),
        "30003" | "30008" => FailedTemporary,
        _ => return None,
    })
}
