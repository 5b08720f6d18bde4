use super::*;
use crate::config::Secret;
use crate::providers::http::sign;
use serde_json::json;

fn gateway(secret: &str) -> Box<dyn Provider> {
    provider(json!({"provider": "http", "secret": secret, "senders": ["+33757000000"]}))
}

const NOW: i64 = 1_800_000_000;
const INBOUND: &str =
    r#"{"id":"gw-123","from":"+33612345678","to":"+33757000000","text":"9 merci"}"#;

fn signed(secret: &str, timestamp: &str, body: &str) -> Owned {
    let signature = sign(&Secret::new(secret), timestamp, body.as_bytes());
    Owned::post(
        "https://hearback.example.com/webhooks/gw/inbound",
        headers(&[
            (HTTP_SIGNATURE_HEADER, &signature),
            (HTTP_TIMESTAMP_HEADER, timestamp),
        ]),
        body,
    )
}

#[test]
fn the_gateway_signature_is_the_documented_hmac() {
    // Computed independently (Python hmac) over `1800000000.` followed by the body.

    let request = signed("whsec_test", "1800000000", INBOUND);
    assert_eq!(
        request.headers[HTTP_SIGNATURE_HEADER],
        "v1=8582c258c0f3887101e4339e39f97ae8439900f51dcd1990ecf9256b951522d7"
    );
}

#[test]
fn a_signed_gateway_webhook_verifies_and_resists_tampering() {
    let request = signed("whsec_test", "1800000000", INBOUND);
    let signed_parts = [
        Signed::Body,
        Signed::Header(HTTP_SIGNATURE_HEADER),
        Signed::Header(HTTP_TIMESTAMP_HEADER),
    ];
    assert_tampering_fails(&*gateway("whsec_test"), &request, at(NOW), &signed_parts);
    assert_eq!(
        request.verify(&*gateway("whsec_tesu"), at(NOW)),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn a_gateway_webhook_outside_five_minutes_is_refused() {
    let gateway = gateway("whsec_test");
    let request = signed("whsec_test", "1800000000", INBOUND);
    for (now, expected) in [
        (NOW + 300, Ok(())),
        (NOW - 300, Ok(())),
        (
            NOW + 301,
            Err(VerifyError::OutsideReplayWindow {
                skew_secs: 301,
                window_secs: 300,
            }),
        ),
        (
            NOW - 301,
            Err(VerifyError::OutsideReplayWindow {
                skew_secs: -301,
                window_secs: 300,
            }),
        ),
    ] {
        assert_eq!(request.verify(&*gateway, at(now)), expected, "{now}");
    }
}

#[test]
fn during_a_rotation_either_secret_verifies() {
    let old = sign(&Secret::new("old"), "1800000000", INBOUND.as_bytes());
    let new = sign(&Secret::new("new"), "1800000000", INBOUND.as_bytes());
    let request = Owned::post(
        "https://h.example.com/",
        headers(&[
            (HTTP_SIGNATURE_HEADER, &format!("{old}, {new}")),
            (HTTP_TIMESTAMP_HEADER, "1800000000"),
        ]),
        INBOUND,
    );
    assert_eq!(request.verify(&*gateway("new"), at(NOW)), Ok(()));
    assert_eq!(request.verify(&*gateway("old"), at(NOW)), Ok(()));
}

#[test]
fn gateway_header_problems_are_named() {
    let gateway = gateway("s");
    let cases = [
        (
            headers(&[(HTTP_TIMESTAMP_HEADER, "1800000000")]),
            VerifyError::MissingHeader(HTTP_SIGNATURE_HEADER),
        ),
        (
            headers(&[(HTTP_SIGNATURE_HEADER, "v1=00")]),
            VerifyError::MissingHeader(HTTP_TIMESTAMP_HEADER),
        ),
        (
            headers(&[
                (HTTP_SIGNATURE_HEADER, "v1=00"),
                (HTTP_TIMESTAMP_HEADER, "now"),
            ]),
            VerifyError::MalformedHeader {
                header: HTTP_TIMESTAMP_HEADER,
                reason: "not a number of seconds",
            },
        ),
        (
            headers(&[
                (HTTP_SIGNATURE_HEADER, "sha256=00"),
                (HTTP_TIMESTAMP_HEADER, "1800000000"),
            ]),
            VerifyError::MalformedHeader {
                header: HTTP_SIGNATURE_HEADER,
                reason: "no v1= signature",
            },
        ),
    ];
    for (headers, expected) in cases {
        let request = Owned::post("https://h.example.com/", headers, INBOUND);
        assert_eq!(request.verify(&*gateway, at(NOW)), Err(expected));
    }
}

#[test]
fn gateway_bodies_parse_as_documented() {
    let gateway = gateway("s");
    let parse_inbound = |body: &str| {
        gateway.parse_inbound(&Owned::post("https://h/", headers(&[]), body).request())
    };
    let parse_status =
        |body: &str| gateway.parse_status(&Owned::post("https://h/", headers(&[]), body).request());
    assert_eq!(
        parse_inbound(
            r#"[{"id":"gw-1","from":"33612345678","to":"+33757000000","text":"9",
                          "part":{"reference":"ab12","index":1,"total":2}}]"#
        ),
        Ok(vec![InboundMessage {
            provider_message_id: "gw-1".into(),
            from: "+33612345678".into(),
            to: "+33757000000".into(),
            text: "9".into(),
            part: Some(PartInfo {
                reference: "ab12".into(),
                index: 1,
                total: 2
            }),
        }])
    );
    // A message in one part is a whole message, not a part waiting for others.
    assert_eq!(
        parse_inbound(
            r#"{"id":"gw-2","from":"+33612345678","to":"+33757000000","text":"8",
                "part":{"reference":"cd34","index":1,"total":1}}"#
        ),
        Ok(vec![InboundMessage {
            provider_message_id: "gw-2".into(),
            from: "+33612345678".into(),
            to: "+33757000000".into(),
            text: "8".into(),
            part: None,
        }])
    );
    assert_eq!(
        parse_status(
            r#"{"id":"gw-456","status":"failed_permanent","reason":"landline","error_code":"E42"}"#
        ),
        Ok(vec![StatusUpdate {
            provider_message_id: "gw-456".into(),
            status: DeliveryStatus::FailedPermanent(PermanentReason::Landline),
            error_code: Some("E42".into()),
            raw_status: "failed_permanent".into(),
        }])
    );
    let malformed: [(&str, ParseError); 7] = [
        ("", ParseError::NotJson { line: 1, column: 0 }),
        ("{\"id\":", ParseError::NotJson { line: 1, column: 6 }),
        (
            "42",
            ParseError::InvalidField {
                field: "body",
                reason: "not an object or an array of objects",
            },
        ),
        (
            r#"{"from":"+1","to":"+2","text":"x"}"#,
            ParseError::MissingField("id"),
        ),
        (
            r#"{"id":"1","from":7,"to":"+2","text":"x"}"#,
            ParseError::InvalidField {
                field: "from",
                reason: "not a string",
            },
        ),
        (
            r#"{"id":"1","from":"+1","to":"+2","text":"x","part":{"reference":"r","index":3,"total":2}}"#,
            ParseError::InvalidField {
                field: "part.index",
                reason: "greater than part.total",
            },
        ),
        (
            r#"{"id":"1","from":"+1","to":"+2","text":"x","part":{"reference":"r","index":0,"total":2}}"#,
            ParseError::InvalidField {
                field: "part.index",
                reason: "not a number from 1 to 65535",
            },
        ),
    ];
    for (body, expected) in malformed {
        assert_eq!(parse_inbound(body), Err(expected), "{body}");
    }
    assert_eq!(
        parse_status(r#"{"id":"1","status":"failed_permanent","reason":"moon"}"#),
        Err(ParseError::InvalidField {
            field: "reason",
            reason: "not one of the documented reasons"
        })
    );
    assert_eq!(
        parse_status(r#"{"id":"1","status":"lost"}"#),
        Err(ParseError::UnknownStatus("lost".into()))
    );
}

#[test]
fn gateway_statuses_map_one_to_one() {
    use DeliveryStatus::*;
    use PermanentReason::*;
    let cases = [
        ("queued", None, Queued),
        ("sent", None, Sent),
        ("delivered", None, Delivered),
        ("failed_temporary", None, FailedTemporary),
        ("failed_permanent", None, FailedPermanent(Other)),
        ("failed_permanent", Some("other"), FailedPermanent(Other)),
        (
            "failed_permanent",
            Some("invalid_number"),
            FailedPermanent(InvalidNumber),
        ),
        (
            "failed_permanent",
            Some("landline"),
            FailedPermanent(Landline),
        ),
        (
            "failed_permanent",
            Some("unreachable"),
            FailedPermanent(Unreachable),
        ),
        (
            "failed_permanent",
            Some("opted_out"),
            FailedPermanent(OptedOutAtCarrier),
        ),
        (
            "failed_permanent",
            Some("blocked"),
            FailedPermanent(Blocked),
        ),
    ];
    for (raw, reason, expected) in cases {
        assert_eq!(
            crate::providers::http::status(raw, reason),
            Ok(expected),
            "{raw} {reason:?}"
        );
    }
}

#[test]
fn the_console_channel_accepts_unsigned_json() {
    let console = provider(json!({"provider": "console"}));
    let request = Owned::post(
        "http://127.0.0.1:8080/webhooks/console/inbound",
        headers(&[]),
        r#"{"from":"+33612345678","to":"+33600000000","text":"10/10 top","id":"c-1"}"#,
    );
    assert_eq!(console.verify(&request.request(), at(0)), Ok(()));
    assert_eq!(console.name(), "console");
    assert_eq!(
        console.parse_inbound(&request.request()),
        Ok(vec![InboundMessage {
            provider_message_id: "c-1".into(),
            from: "+33612345678".into(),
            to: "+33600000000".into(),
            text: "10/10 top".into(),
            part: None,
        }])
    );
}

#[test]
fn inbound_messages_do_not_show_personal_data_in_debug() {
    let message = InboundMessage {
        provider_message_id: "m".into(),
        from: "+33612345678".into(),
        to: "+33757000000".into(),
        text: "je suis très déçu".into(),
        part: None,
    };
    let printed = format!("{message:?}");
    assert!(
        !printed.contains("12345678") && !printed.contains("déçu"),
        "{printed}"
    );
}
