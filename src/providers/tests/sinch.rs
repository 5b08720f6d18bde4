use super::*;
use serde_json::json;

fn sinch(secret: &str) -> Box<dyn Provider> {
    provider(json!({
        "provider": "sinch", "service_plan_id": "plan", "api_token": "token",
        "webhook_secret": secret, "senders": ["+33757000000"],
    }))
}

fn published() -> (Value, Owned) {
    let vector = json_fixture(fixture!("sinch/sms_webhook_signature_vector.json"));
    let pairs: Vec<(&str, &str)> = vector["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    let request = Owned::post(
        "https://example.com/status",
        headers(&pairs),
        vector["raw_body"].as_str().unwrap(),
    );
    (vector, request)
}

const SIGNED_AT: i64 = 1736760161;

#[test]
fn the_published_sinch_vector_verifies_and_resists_tampering() {
    let (vector, request) = published();
    let sinch_provider = sinch(vector["secret"].as_str().unwrap());
    let signed = [
        Signed::Body,
        Signed::Header("x-sinch-webhook-signature"),
        Signed::Header("x-sinch-webhook-signature-nonce"),
        Signed::Header("x-sinch-webhook-signature-timestamp"),
    ];
    assert_tampering_fails(&*sinch_provider, &request, at(SIGNED_AT), &signed);
    assert_eq!(
        request.verify(&*sinch("SMSWebhooksSecreT"), at(SIGNED_AT)),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        request.verify(&*sinch_provider, at(SIGNED_AT + 301)),
        Err(VerifyError::OutsideReplayWindow {
            skew_secs: 301,
            window_secs: 300
        })
    );
}

#[test]
fn sinch_header_problems_are_named() {
    let (vector, request) = published();
    let sinch = sinch(vector["secret"].as_str().unwrap());
    let mut other_algorithm = request.clone();
    other_algorithm.headers.insert(
        "x-sinch-webhook-signature-algorithm",
        HeaderValue::from_static("HmacSHA1"),
    );
    assert_eq!(
        other_algorithm.verify(&*sinch, at(SIGNED_AT)),
        Err(VerifyError::UnsupportedAlgorithm("HmacSHA1".into()))
    );
    let mut no_algorithm = request.clone();
    no_algorithm
        .headers
        .remove("x-sinch-webhook-signature-algorithm");
    assert_eq!(no_algorithm.verify(&*sinch, at(SIGNED_AT)), Ok(()));
    for name in [
        "x-sinch-webhook-signature",
        "x-sinch-webhook-signature-nonce",
        "x-sinch-webhook-signature-timestamp",
    ] {
        let mut missing = request.clone();
        missing.headers.remove(name);
        assert_eq!(
            missing.verify(&*sinch, at(SIGNED_AT)),
            Err(VerifyError::MissingHeader(name))
        );
    }
}

#[test]
fn the_signed_sinch_delivery_report_parses() {
    let (vector, request) = published();
    assert_eq!(
        sinch(vector["secret"].as_str().unwrap()).parse_status(&request.request()),
        Ok(vec![StatusUpdate {
            provider_message_id: "01JHFFHQ0P99JPPNQPJDV7JTBP".into(),
            status: DeliveryStatus::Delivered,
            error_code: None,
            raw_status: "Delivered".into(),
        }])
    );
}

#[test]
fn a_sinch_mo_text_parses() {
    let fixture = json_fixture(fixture!("sinch/mo_text.json"));
    let request = Owned::post(
        "https://example.com/in",
        headers(&[]),
        fixture["payload"].to_string(),
    );
    let sinch = sinch("s");
    assert_eq!(
        sinch.parse_inbound(&request.request()),
        Ok(vec![InboundMessage {
            provider_message_id: "01XXXXX21XXXXX119Z8P1XXXXX".into(),
            from: "+16051234567".into(),
            to: "+13185551234".into(),
            text: "This is the SMS body".into(),
            part: None,
        }])
    );
    assert_eq!(
        sinch.parse_status(&request.request()),
        Err(ParseError::UnexpectedKind("mo_text".into()))
    );
    let binary = Owned::post(
        "https://example.com/in",
        headers(&[]),
        r#"{"type":"mo_binary"}"#,
    );
    assert_eq!(
        sinch.parse_inbound(&binary.request()),
        Err(ParseError::UnexpectedKind("mo_binary".into()))
    );
    let no_body = Owned::post(
        "https://example.com/in",
        headers(&[]),
        r#"{"type":"mo_text","id":"1","from":"1","to":"2"}"#,
    );
    assert_eq!(
        sinch.parse_inbound(&no_body.request()),
        Err(ParseError::MissingField("body"))
    );
}

#[test]
fn sinch_statuses_and_codes_map_to_the_normalised_set() {
    use DeliveryStatus::*;
    use PermanentReason::*;
    let fixture = json_fixture(fixture!("sinch/delivery_report_codes.json"));
    let statuses = [
        ("Queued", Queued),
        ("Dispatched", Sent),
        ("Aborted", FailedPermanent(Other)),
        ("Cancelled", FailedPermanent(Other)),
        ("Rejected", FailedPermanent(Other)),
        ("Deleted", FailedPermanent(Other)),
        ("Delivered", Delivered),
        ("Failed", FailedTemporary),
        ("Expired", FailedTemporary),
        ("Unknown", Sent),
    ];
    let documented = fixture["statuses"].as_array().unwrap();
    assert_eq!(statuses.len(), documented.len());
    for (raw, expected) in statuses {
        assert!(documented.contains(&json!(raw)), "{raw}");
        assert_eq!(
            crate::providers::sinch::status(raw, None),
            Ok(expected),
            "{raw}"
        );
    }
    let codes = [
        ("0", None),
        ("400", None),
        ("401", None),
        ("402", Some(FailedPermanent(Unreachable))),
        ("403", Some(FailedTemporary)),
        ("404", Some(FailedTemporary)),
        ("405", Some(FailedPermanent(Other))),
        ("406", Some(FailedTemporary)),
        ("407", Some(FailedPermanent(Other))),
        ("408", Some(FailedPermanent(Other))),
        ("410", Some(FailedPermanent(Other))),
        ("411", Some(FailedPermanent(Other))),
        ("412", Some(FailedPermanent(Other))),
        ("413", Some(FailedPermanent(Other))),
        ("414", Some(FailedPermanent(Other))),
        ("415", Some(FailedPermanent(Other))),
        ("416", Some(FailedPermanent(Other))),
        ("417", Some(FailedPermanent(Other))),
        ("418", Some(FailedPermanent(Other))),
    ];
    assert_eq!(codes.len(), fixture["codes"].as_object().unwrap().len());
    for (code, expected) in codes {
        assert!(fixture["codes"].get(code).is_some(), "{code}");
        assert_eq!(crate::providers::sinch::failure(code), expected, "{code}");
    }
    assert_eq!(
        crate::providers::sinch::status("Failed", Some("402")),
        Ok(FailedPermanent(Unreachable))
    );
}
