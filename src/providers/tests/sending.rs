//! Sending, against real HTTP stand-ins of each provider's API: what each adapter sends
//! (authentication, method, path, fields), what it makes of the provider's documented answers,
//! and how every failure is classified. No error may quote the number or the text.

use super::stand_in::{
    CALLBACK, FROM, Seen, StandIn, TEXT, TO, basic, client, refusing_address, silent_server, sms,
};
use super::*;
use crate::providers::send::{self, Outcome};
use crate::providers::{OutboundSms, SendError, Sent};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";

fn twilio(base: &str) -> Value {
    json!({"provider": "twilio", "account_sid": TWILIO_SID, "auth_token": "twilio-token",
           "senders": [FROM], "api_base_url": base})
}

fn vonage(base: &str) -> Value {
    json!({"provider": "vonage", "api_key": "a1b2c3d4", "api_secret": "vonage-secret",
           "signature_secret": "sig", "senders": [FROM], "api_base_url": base})
}

fn plivo(base: &str) -> Value {
    json!({"provider": "plivo", "auth_id": "MAXXXXXXXXXXXXXXXXXX", "auth_token": "plivo-token",
           "senders": [FROM], "api_base_url": base})
}

fn telnyx(base: &str) -> Value {
    json!({"provider": "telnyx", "api_key": "KEY0123456789ABCDEF",
           "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
           "senders": [FROM], "api_base_url": base})
}

fn sinch(base: &str) -> Value {
    json!({"provider": "sinch", "service_plan_id": "plan123", "api_token": "sinch-token",
           "webhook_secret": "hook", "senders": [FROM], "api_base_url": base})
}

fn messagebird(base: &str) -> Value {
    json!({"provider": "messagebird", "access_key": "live_key", "signing_key": "sign",
           "senders": [FROM], "api_base_url": base})
}

fn gateway(base: &str) -> Value {
    json!({"provider": "http", "secret": "gateway-secret", "senders": [FROM],
           "api_base_url": format!("{base}/send")})
}

/// A provider that calls an API: its name, its channel pointed at a base URL, and the body it
/// documents for a rejected credential (HTTP 401).
struct Api(&'static str, fn(&str) -> Value, &'static str);

const APIS: &[Api] = &[
    Api(
        "twilio",
        twilio,
        r#"{"code": 20003, "message": "Authenticate", "status": 401,
            "more_info": "https://www.twilio.com/docs/errors/20003"}"#,
    ),
    Api(
        "vonage",
        vonage,
        r#"{"type": "https://developer.nexmo.com/api-errors#unauthorized",
            "title": "Unauthorized"}"#,
    ),
    Api(
        "plivo",
        plivo,
        "Could not verify your access level for that URL.",
    ),
    Api(
        "telnyx",
        telnyx,
        r#"{"errors": [{"code": "10009", "title": "Authentication failed",
                        "detail": "The API key looks malformed."}]}"#,
    ),
    Api(
        "sinch",
        sinch,
        r#"{"code": "unauthorized", "text": "Unauthorized"}"#,
    ),
    Api(
        "messagebird",
        messagebird,
        r#"{"errors": [{"code": 2, "parameter": "access_key",
                        "description": "Request not allowed (incorrect access_key)"}]}"#,
    ),
    Api(
        "http",
        gateway,
        r#"{"reason": "other", "error_code": "bad_signature"}"#,
    ),
];

async fn send_with(channel: Value) -> Result<Sent, SendError> {
    send_sms(channel, sms()).await
}

async fn send_sms(channel: Value, sms: OutboundSms<'_>) -> Result<Sent, SendError> {
    let provider = provider(channel);
    let client = client();
    let outcome = provider.send(&client, sms).await;
    if let Err(error) = &outcome {
        assert_leaks_nothing(error);
    }
    outcome
}

/// Neither the number (with or without `+`), nor the text appear in the error.
fn assert_leaks_nothing(error: &SendError) {
    for shown in [format!("{error}"), format!("{error:?}")] {
        assert!(!shown.contains(&TO[1..]), "the number leaks: {shown}");
        assert!(!shown.contains(TEXT), "the text leaks: {shown}");
    }
}

fn permanent_reason(outcome: Result<Sent, SendError>) -> (Option<String>, Option<PermanentReason>) {
    match outcome {
        Err(SendError::Permanent {
            code, permanent, ..
        }) => (code, permanent),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

fn retry_delay(outcome: Result<Sent, SendError>) -> Option<Duration> {
    match outcome {
        Err(SendError::Retryable { retry_after, .. }) => retry_after,
        other => panic!("expected a retryable failure, got {other:?}"),
    }
}

fn assert_post(seen: &Seen, target: &str) {
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.target, target);
}

// ---------------------------------------------------------------------------------------------
// Twilio

const TWILIO_CREATED: &str = r#"{
  "account_sid": "AC0123456789abcdef0123456789abcdef", "api_version": "2010-04-01",
  "body": "Votre avis sur la livraison ? Répondez de 0 à 10",
  "date_created": "Thu, 24 Aug 2023 05:01:45 +0000", "direction": "outbound-api",
  "error_code": null, "error_message": null, "from": "+33757000000",
  "messaging_service_sid": null, "num_media": "0", "num_segments": "1", "price": null,
  "price_unit": "USD", "sid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "status": "queued",
  "to": "+33612345678",
  "uri": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/SM1f0e8ae6ade43cb3c0ce4525424e404f.json"
}"#;

#[tokio::test]
async fn twilio_gets_a_form_with_basic_auth_and_gives_the_message_sid() {
    let api = StandIn::answering(201, &[], TWILIO_CREATED).await;
    let sent = send_with(twilio(&api.url)).await.unwrap();
    assert_eq!(
        sent,
        Sent {
            provider_message_id: "SM1f0e8ae6ade43cb3c0ce4525424e404f".into(),
            segments: Some(1),
            cost: None,
        }
    );
    let seen = api.request();
    assert_post(
        &seen,
        &format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"),
    );
    assert_eq!(
        seen.header("authorization"),
        basic(TWILIO_SID, "twilio-token")
    );
    let form = seen.form();
    let expected = [
        ("Body", TEXT),
        ("From", FROM),
        ("StatusCallback", CALLBACK),
        ("To", TO),
    ];
    assert_eq!(
        form,
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    );
}

#[tokio::test]
async fn twilio_is_asked_for_a_message_whose_send_outcome_is_unknown() {
    let listed = format!(
        r#"{{"messages": [{{"sid": "SMother", "body": "another text", "to": "{TO}", "from": "{FROM}",
                            "date_created": "Mon, 23 Nov 2026 10:00:05 +0000"}},
                          {{"sid": "SMfound", "body": "{TEXT}", "to": "{TO}", "from": "{FROM}", "num_segments": "1",
                            "date_created": "Mon, 23 Nov 2026 10:00:02 +0000"}},
                          {{"sid": "SMolder", "body": "{TEXT}", "to": "{TO}", "from": "{FROM}",
                            "date_created": "Fri, 20 Nov 2026 10:00:00 +0000"}}]}}"#
    );
    let api = StandIn::answering(200, &[], &listed).await;
    // 2026-11-23T10:00:00Z: the message was queued then.
    let since = Timestamp::from_millis(1_795_428_000_000).unwrap();
    let found = provider(twilio(&api.url))
        .find_sent(&client(), sms(), since)
        .await
        .unwrap();
    assert_eq!(
        found,
        crate::providers::Lookup::Found(Sent {
            provider_message_id: "SMfound".into(),
            segments: Some(1),
            cost: None,
        })
    );
    let seen = api.request();
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.header("authorization"),
        basic(TWILIO_SID, "twilio-token")
    );
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(seen.target.split_once('?').expect("a query").1.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    assert_eq!(query["To"], TO);
    assert_eq!(query["From"], FROM);

    // Only an older message with the same text (an earlier survey): not this one.
    let older = format!(
        r#"{{"messages": [{{"sid": "SMolder", "body": "{TEXT}", "date_created": "Fri, 20 Nov 2026 10:00:00 +0000"}}]}}"#
    );
    let api = StandIn::answering(200, &[], &older).await;
    let missing = provider(twilio(&api.url))
        .find_sent(&client(), sms(), since)
        .await
        .unwrap();
    assert_eq!(missing, crate::providers::Lookup::NotFound);
    // A match whose date cannot be read: cannot tell, so nothing is sent again.
    let undated = format!(r#"{{"messages": [{{"sid": "SMx", "body": "{TEXT}"}}]}}"#);
    let api = StandIn::answering(200, &[], &undated).await;
    let unknown = provider(twilio(&api.url))
        .find_sent(&client(), sms(), since)
        .await
        .unwrap();
    assert_eq!(unknown, crate::providers::Lookup::Unsupported);
}

#[tokio::test]
async fn providers_that_cannot_list_their_messages_say_so() {
    let api = StandIn::answering(200, &[], "{}").await;
    let lookup = provider(telnyx(&api.url))
        .find_sent(&client(), sms(), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(lookup, crate::providers::Lookup::Unsupported);
    assert_eq!(api.requests(), 0);
}

#[tokio::test]
async fn twilio_reports_a_price_once_it_is_known() {
    let body = TWILIO_CREATED.replace(r#""price": null"#, r#""price": "-0.07980""#);
    let api = StandIn::answering(201, &[], &body).await;
    let sent = send_with(twilio(&api.url)).await.unwrap();
    assert_eq!(sent.cost.as_deref(), Some("0.07980 USD"));
}

#[tokio::test]
async fn twilio_without_a_status_callback_sends_none() {
    let api = StandIn::answering(201, &[], TWILIO_CREATED).await;
    let without = OutboundSms {
        status_callback: None,
        ..sms()
    };
    send_sms(twilio(&api.url), without).await.unwrap();
    assert!(!api.request().form().contains_key("StatusCallback"));
}

#[tokio::test]
async fn twilio_error_codes_about_the_number_say_why() {
    use PermanentReason::*;
    let cases = [
        (
            "21211",
            "The 'To' number +33612345678 is not a valid phone number.",
            Some(InvalidNumber),
        ),
        (
            "21614",
            "'To' number is not a valid mobile number",
            Some(InvalidNumber),
        ),
        (
            "21610",
            "Attempt to send to unsubscribed recipient",
            Some(OptedOutAtCarrier),
        ),
        (
            "21612",
            "The 'To' phone number is not currently reachable via SMS",
            Some(Unreachable),
        ),
        (
            "21408",
            "Permission to send an SMS has not been enabled for the region",
            Some(Other),
        ),
        (
            "21606",
            "The 'From' phone number provided is not a valid message-capable number",
            None,
        ),
    ];
    for (code, message, reason) in cases {
        let body = json!({"code": code.parse::<u32>().unwrap(), "message": message,
                          "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                          "status": 400});
        let api = StandIn::answering(400, &[], &body.to_string()).await;
        let (got_code, got_reason) = permanent_reason(send_with(twilio(&api.url)).await);
        assert_eq!(got_code.as_deref(), Some(code));
        assert_eq!(got_reason, reason, "{code}");
    }
}

// ---------------------------------------------------------------------------------------------
// Vonage

const VONAGE_ACCEPTED: &str = r#"{
  "message-count": "1",
  "messages": [{"to": "33612345678", "message-id": "0A0000000123ABCD1", "status": "0",
                "remaining-balance": "3.14159265", "message-price": "0.03330000",
                "network": "20801"}]
}"#;

#[tokio::test]
async fn vonage_gets_its_credentials_in_the_form_and_gives_the_message_id() {
    let api = StandIn::answering(200, &[], VONAGE_ACCEPTED).await;
    let sent = send_with(vonage(&api.url)).await.unwrap();
    assert_eq!(
        sent,
        Sent {
            provider_message_id: "0A0000000123ABCD1".into(),
            segments: Some(1),
            cost: Some("0.03330000".into()),
        }
    );
    let seen = api.request();
    assert_post(&seen, "/sms/json");
    let form = seen.form();
    let expected = [
        ("api_key", "a1b2c3d4"),
        ("api_secret", "vonage-secret"),
        ("callback", CALLBACK),
        ("from", "33757000000"),
        ("text", TEXT),
        ("to", "33612345678"),
    ];
    assert_eq!(
        form,
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    );
}

#[tokio::test]
async fn vonage_is_told_when_the_text_needs_unicode() {
    let api = StandIn::answering(200, &[], VONAGE_ACCEPTED).await;
    let emoji = OutboundSms {
        text: "Merci 👍",
        from: "MaBoutique",
        ..sms()
    };
    send_sms(vonage(&api.url), emoji).await.unwrap();
    let form = api.request().form();
    assert_eq!(form["type"], "unicode");
    assert_eq!(form["from"], "MaBoutique");
}

#[tokio::test]
async fn vonage_counts_every_part_and_adds_their_prices() {
    let body = json!({"message-count": "2", "messages": [
        {"to": "33612345678", "message-id": "0A000001", "status": "0",
         "message-price": "0.03330000"},
        {"to": "33612345678", "message-id": "0A000002", "status": "0",
         "message-price": "0.03330000"},
    ]});
    let api = StandIn::answering(200, &[], &body.to_string()).await;
    let sent = send_with(vonage(&api.url)).await.unwrap();
    assert_eq!(sent.provider_message_id, "0A000001");
    assert_eq!(sent.segments, Some(2));
    assert_eq!(sent.cost.as_deref(), Some("0.06660000"));
}

#[tokio::test]
async fn vonage_statuses_in_a_200_answer_are_failures() {
    use PermanentReason::*;
    let cases = [
        ("6", "Unroutable message - rejected", Some(InvalidNumber)),
        ("7", "Number barred", Some(Blocked)),
        ("4", "Bad Credentials", Some(Other)),
        ("9", "Quota Exceeded - rejected", Some(Other)),
        ("15", "Illegal Sender Address - rejected", Some(Other)),
    ];
    for (status, text, reason) in cases {
        let body = json!({"message-count": "1",
                          "messages": [{"to": "33612345678", "status": status, "error-text": text}]});
        let api = StandIn::answering(200, &[], &body.to_string()).await;
        let (code, got) = permanent_reason(send_with(vonage(&api.url)).await);
        assert_eq!(code.as_deref(), Some(status));
        assert_eq!(got, reason, "status {status}");
    }
}

#[tokio::test]
async fn vonage_throttling_in_a_200_answer_is_retryable() {
    let body = json!({"message-count": "1", "messages": [{"status": "1",
        "error-text": "Throughput Rate Exceeded - please wait [ 10 ] and retry"}]});
    let api = StandIn::answering(200, &[], &body.to_string()).await;
    assert_eq!(retry_delay(send_with(vonage(&api.url)).await), None);
}

// ---------------------------------------------------------------------------------------------
// Plivo

#[tokio::test]
async fn plivo_gets_json_with_basic_auth_and_gives_the_message_uuid() {
    let body = r#"{"api_id": "db342550-7f1d-11e1-8ea7-1231380bc196", "message": "message(s) queued",
                   "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]}"#;
    let api = StandIn::answering(202, &[], body).await;
    let sent = send_with(plivo(&api.url)).await.unwrap();
    assert_eq!(
        sent.provider_message_id,
        "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
    );
    let seen = api.request();
    assert_post(&seen, "/v1/Account/MAXXXXXXXXXXXXXXXXXX/Message/");
    assert_eq!(
        seen.header("authorization"),
        basic("MAXXXXXXXXXXXXXXXXXX", "plivo-token")
    );
    assert_eq!(
        seen.json(),
        json!({"src": FROM, "dst": TO, "text": TEXT, "type": "sms", "url": CALLBACK,
               "method": "POST"})
    );
}

#[tokio::test]
async fn plivo_calling_the_destination_invalid_is_an_invalid_number() {
    let body =
        r#"{"api_id": "f2d0a7a2-0d3a-11ef-9f2e-0242ac110002", "error": "invalid 'dst' parameter"}"#;
    let api = StandIn::answering(400, &[], body).await;
    let (_, reason) = permanent_reason(send_with(plivo(&api.url)).await);
    assert_eq!(reason, Some(PermanentReason::InvalidNumber));
}

#[tokio::test]
async fn plivo_other_refusals_say_nothing_about_the_number() {
    let body = r#"{"api_id": "f2d0a7a2-0d3a-11ef-9f2e-0242ac110002",
                   "error": "src parameter not provided"}"#;
    let api = StandIn::answering(400, &[], body).await;
    assert_eq!(
        permanent_reason(send_with(plivo(&api.url)).await),
        (None, None)
    );
}

#[tokio::test]
async fn plivo_never_gets_a_recipient_list() {
    let api = StandIn::answering(202, &[], "{}").await;
    let two = OutboundSms {
        to: "+33612345678<+33698765432",
        ..sms()
    };
    let (_, reason) = permanent_reason(send_sms(plivo(&api.url), two).await);
    assert_eq!(reason, Some(PermanentReason::InvalidNumber));
    assert_eq!(api.requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// Telnyx

const TELNYX_SENT: &str = r#"{"data": {
  "record_type": "message", "direction": "outbound", "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
  "type": "SMS", "messaging_profile_id": "4000eba1-a0c0-4563-9925-b25e842a7cb6",
  "from": {"phone_number": "+33757000000", "carrier": "Telnyx", "line_type": "Wireless"},
  "to": [{"phone_number": "+33612345678", "status": "queued", "carrier": "ORANGE",
          "line_type": "Wireless"}],
  "text": "Votre avis sur la livraison ? Répondez de 0 à 10", "parts": 1,
  "cost": {"amount": "0.0510", "currency": "USD"}, "webhook_url": null, "errors": []
}}"#;

#[tokio::test]
async fn telnyx_gets_json_with_a_bearer_key_and_gives_the_message_id() {
    let api = StandIn::answering(200, &[], TELNYX_SENT).await;
    let sent = send_with(telnyx(&api.url)).await.unwrap();
    assert_eq!(
        sent,
        Sent {
            provider_message_id: "40385f64-5717-4562-b3fc-2c963f66afa6".into(),
            segments: Some(1),
            cost: Some("0.0510 USD".into()),
        }
    );
    let seen = api.request();
    assert_post(&seen, "/v2/messages");
    assert_eq!(seen.header("authorization"), "Bearer KEY0123456789ABCDEF");
    assert_eq!(
        seen.json(),
        json!({"from": FROM, "to": TO, "text": TEXT, "webhook_url": CALLBACK})
    );
}

#[tokio::test]
async fn telnyx_error_codes_about_the_number_say_why() {
    use PermanentReason::*;
    let cases = [
        (
            "40310",
            "Invalid 'to' address",
            Some("/to"),
            Some(InvalidNumber),
        ),
        (
            "10016",
            "Phone number must be in +E.164 format",
            Some("/to"),
            Some(InvalidNumber),
        ),
        (
            "10016",
            "Phone number must be in +E.164 format",
            Some("/from"),
            Some(Other),
        ),
        (
            "40300",
            "Blocked due to STOP message",
            None,
            Some(OptedOutAtCarrier),
        ),
        ("40001", "Not routable", None, Some(Unreachable)),
    ];
    for (code, title, pointer, reason) in cases {
        let mut error = json!({"code": code, "title": title, "detail": title});
        if let Some(pointer) = pointer {
            error["source"] = json!({"pointer": pointer});
        }
        let body = json!({"errors": [error]});
        let api = StandIn::answering(400, &[], &body.to_string()).await;
        let (got_code, got) = permanent_reason(send_with(telnyx(&api.url)).await);
        assert_eq!(got_code.as_deref(), Some(code));
        assert_eq!(got, reason, "{code} on {pointer:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sinch

#[tokio::test]
async fn sinch_gets_a_one_recipient_batch_with_a_bearer_token_and_gives_the_batch_id() {
    let body = r#"{"id": "01FC66621XXXXX119Z8PMV1QPQ", "to": ["33612345678"], "from": "33757000000",
                   "canceled": false, "body": "Votre avis sur la livraison ? Répondez de 0 à 10",
                   "type": "mt_text", "created_at": "2019-08-24T14:15:22Z",
                   "modified_at": "2019-08-24T14:15:22Z", "delivery_report": "per_recipient",
                   "expire_at": "2019-08-27T14:15:22Z", "flash_message": false}"#;
    let api = StandIn::answering(201, &[], body).await;
    let sent = send_with(sinch(&api.url)).await.unwrap();
    assert_eq!(sent.provider_message_id, "01FC66621XXXXX119Z8PMV1QPQ");
    let seen = api.request();
    assert_post(&seen, "/xms/v1/plan123/batches");
    assert_eq!(seen.header("authorization"), "Bearer sinch-token");
    assert_eq!(
        seen.json(),
        json!({"from": FROM, "to": [TO], "body": TEXT, "delivery_report": "per_recipient",
               "callback_url": CALLBACK})
    );
}

#[tokio::test]
async fn sinch_a_malformed_recipient_is_an_invalid_number() {
    let body = r#"{"code": "syntax_invalid_parameter_format",
                   "text": "The recipient number is invalid."}"#;
    let api = StandIn::answering(400, &[], body).await;
    let (code, reason) = permanent_reason(send_with(sinch(&api.url)).await);
    assert_eq!(code.as_deref(), Some("syntax_invalid_parameter_format"));
    assert_eq!(reason, Some(PermanentReason::InvalidNumber));

    let body = r#"{"code": "syntax_invalid_parameter_format", "text": "Invalid callback_url."}"#;
    let api = StandIn::answering(400, &[], body).await;
    assert_eq!(permanent_reason(send_with(sinch(&api.url)).await).1, None);
}

// ---------------------------------------------------------------------------------------------
// MessageBird

#[tokio::test]
async fn messagebird_gets_json_with_its_access_key_and_gives_the_message_id() {
    let body = r#"{"id": "e8077d803532c0b5937c639b60216938",
      "href": "https://rest.messagebird.com/messages/e8077d803532c0b5937c639b60216938",
      "direction": "mt", "type": "sms", "originator": "33757000000",
      "body": "Votre avis sur la livraison ? Répondez de 0 à 10", "reference": null,
      "validity": null, "gateway": null, "typeDetails": {}, "datacoding": "plain", "mclass": 1,
      "scheduledDatetime": null, "createdDatetime": "2016-05-03T14:26:57+00:00",
      "recipients": {"totalCount": 1, "totalSentCount": 1, "totalDeliveredCount": 0,
        "totalDeliveryFailedCount": 0,
        "items": [{"recipient": 33612345678, "status": "sent",
                   "statusDatetime": "2016-05-03T14:26:57+00:00"}]}}"#;
    let api = StandIn::answering(201, &[], body).await;
    let sent = send_with(messagebird(&api.url)).await.unwrap();
    assert_eq!(sent.provider_message_id, "e8077d803532c0b5937c639b60216938");
    let seen = api.request();
    assert_post(&seen, "/messages");
    assert_eq!(seen.header("authorization"), "AccessKey live_key");
    assert_eq!(
        seen.json(),
        json!({"originator": "33757000000", "recipients": ["33612345678"], "body": TEXT,
               "datacoding": "auto", "reportUrl": CALLBACK})
    );
}

#[tokio::test]
async fn messagebird_no_correct_recipient_is_an_invalid_number() {
    let body = r#"{"errors": [{"code": 9, "description": "no (correct) recipients found",
                               "parameter": "recipients"}]}"#;
    let api = StandIn::answering(422, &[], body).await;
    let (code, reason) = permanent_reason(send_with(messagebird(&api.url)).await);
    assert_eq!(code.as_deref(), Some("9"));
    assert_eq!(reason, Some(PermanentReason::InvalidNumber));
}

// ---------------------------------------------------------------------------------------------
// The generic HTTP gateway

#[tokio::test]
async fn the_gateway_gets_signed_json_it_can_verify_like_a_webhook() {
    let api = StandIn::answering(
        200,
        &[],
        r#"{"id": "gw-456", "segments": 2, "cost": "0.10 EUR"}"#,
    )
    .await;
    let channel = gateway(&api.url);
    let sent = send_with(channel.clone()).await.unwrap();
    assert_eq!(
        sent,
        Sent {
            provider_message_id: "gw-456".into(),
            segments: Some(2),
            cost: Some("0.10 EUR".into()),
        }
    );
    let seen = api.request();
    assert_post(&seen, "/send");
    assert_eq!(
        seen.json(),
        json!({"from": FROM, "to": TO, "text": TEXT, "status_callback": CALLBACK})
    );
    let gateway = provider(channel);
    let as_webhook = WebhookRequest {
        method: &seen.method,
        url: &format!("{}/send", api.url),
        headers: &seen.headers,
        body: &seen.body,
    };
    let now = at(chrono::Utc::now().timestamp());
    assert_eq!(gateway.verify(&as_webhook, now), Ok(()));
}

#[tokio::test]
async fn the_gateway_refuses_with_a_reason_from_the_status_vocabulary() {
    let body = r#"{"reason": "landline", "error_code": "E42"}"#;
    let api = StandIn::answering(422, &[], body).await;
    let (code, reason) = permanent_reason(send_with(gateway(&api.url)).await);
    assert_eq!(code.as_deref(), Some("E42"));
    assert_eq!(reason, Some(PermanentReason::Landline));
}

#[tokio::test]
async fn a_gateway_without_an_address_cannot_send() {
    let channel = json!({"provider": "http", "secret": "s", "senders": [FROM]});
    let (code, reason) = permanent_reason(send_with(channel).await);
    assert_eq!(code.as_deref(), Some("not_configured"));
    assert_eq!(reason, None);
}

// ---------------------------------------------------------------------------------------------
// Console

#[tokio::test]
async fn the_console_sends_nothing_and_gives_a_fresh_id() {
    let console = json!({"provider": "console"});
    let first = send_with(console.clone()).await.unwrap();
    let second = send_with(console).await.unwrap();
    assert!(first.provider_message_id.starts_with("console-"));
    assert_ne!(first.provider_message_id, second.provider_message_id);
    assert_eq!(first.segments, Some(1));
    assert_eq!(first.cost, None);
}

// ---------------------------------------------------------------------------------------------
// Every API provider: rejected credentials, throttling, server errors, silence, no connection

#[tokio::test]
async fn rejected_credentials_are_permanent_and_say_nothing_about_the_number() {
    for Api(name, channel, body) in APIS {
        let api = StandIn::answering(401, &[], body).await;
        let (_, reason) = permanent_reason(send_with(channel(&api.url)).await);
        assert!(
            matches!(reason, None | Some(PermanentReason::Other)),
            "{name}: {reason:?}"
        );
    }
}

#[tokio::test]
async fn throttling_is_retried_after_the_delay_the_provider_asks() {
    for Api(name, channel, _) in APIS {
        let api = StandIn::answering(429, &[("retry-after", "7")], r#"{"errors": []}"#).await;
        let delay = retry_delay(send_with(channel(&api.url)).await);
        assert_eq!(delay, Some(Duration::from_secs(7)), "{name}");
    }
}

#[tokio::test]
async fn unavailability_with_a_retry_date_is_retried_at_that_date() {
    for Api(name, channel, _) in APIS {
        let api = StandIn::answering(
            503,
            &[
                ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
                ("retry-after", "Wed, 21 Oct 2015 07:30:00 GMT"),
            ],
            "",
        )
        .await;
        let delay = retry_delay(send_with(channel(&api.url)).await);
        assert_eq!(delay, Some(Duration::from_secs(120)), "{name}");
    }
}

#[tokio::test]
async fn server_errors_are_retried() {
    for Api(name, channel, _) in APIS {
        let api = StandIn::answering(500, &[], "Internal Server Error").await;
        assert_eq!(
            retry_delay(send_with(channel(&api.url)).await),
            None,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_provider_that_never_answers_leaves_the_outcome_unknown() {
    let silent = silent_server().await;
    let quick = crate::providers::http_client_with_timeouts(
        Duration::from_millis(500),
        Duration::from_millis(300),
    );
    for Api(name, channel, _) in APIS {
        let provider = provider(channel(&silent));
        let started = std::time::Instant::now();
        let outcome = provider.send(&quick, sms()).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{name}");
        match outcome {
            Err(SendError::OutcomeUnknown { reason }) => {
                assert!(reason.contains("timed out"), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    let nobody = refusing_address().await;
    for Api(name, channel, _) in APIS {
        match send_with(channel(&nobody)).await {
            Err(SendError::Retryable { reason, .. }) => {
                assert!(reason.contains("could not connect"), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreadable_acceptance_leaves_the_outcome_unknown() {
    for Api(name, channel, _) in APIS {
        let api = StandIn::answering(200, &[], "<html>OK</html>").await;
        match send_with(channel(&api.url)).await {
            Err(SendError::OutcomeUnknown { reason }) => {
                assert!(reason.contains("unreadable"), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    for Api(name, channel, _) in APIS {
        let api =
            StandIn::answering(307, &[("location", "http://127.0.0.1:9/elsewhere")], "").await;
        assert_eq!(
            permanent_reason(send_with(channel(&api.url)).await),
            (None, None),
            "{name}"
        );
        assert_eq!(api.requests(), 1, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// The shared pieces

#[test]
fn retry_after_reads_seconds_and_dates() {
    let headers = |pairs: &[(&str, &str)]| super::headers(pairs);
    assert_eq!(
        send::retry_after(&headers(&[("retry-after", "30")])),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        send::retry_after(&headers(&[
            ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT"),
        ])),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    assert_eq!(
        send::retry_after(&headers(&[("retry-after", "soon")])),
        None
    );
    assert_eq!(send::retry_after(&headers(&[])), None);
}

#[test]
fn the_base_url_override_keeps_its_path_prefix() {
    let proxy = url::Url::parse("https://proxy.example/twilio/").unwrap();
    assert_eq!(
        send::endpoint(Some(&proxy), "https://api.twilio.com", "/2010-04-01/x"),
        "https://proxy.example/twilio/2010-04-01/x"
    );
    assert_eq!(
        send::endpoint(None, "https://api.twilio.com", "/2010-04-01/x"),
        "https://api.twilio.com/2010-04-01/x"
    );
    assert_eq!(send::path_segment("AC12/../x y"), "AC12%2F..%2Fx%20y");
}

#[test]
fn delivery_failures_become_send_outcomes() {
    assert_eq!(
        Outcome::from_delivery(DeliveryStatus::FailedTemporary),
        Some(Outcome::Retry)
    );
    assert_eq!(Outcome::from_delivery(DeliveryStatus::Delivered), None);
}

#[test]
fn an_outbound_message_debugs_without_the_number_or_text() {
    let shown = format!("{:?}", sms());
    assert!(!shown.contains(TO) && !shown.contains(TEXT), "{shown}");
}
