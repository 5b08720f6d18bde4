use super::*;
use serde_json::json;

fn twilio(token: &str) -> Box<dyn Provider> {
    provider(json!({
        "provider": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef",
        "auth_token": token, "senders": ["+33757000000"],
    }))
}

fn signed(url: &str, body: impl Into<Vec<u8>>, signature: &str) -> Owned {
    Owned::post(url, headers(&[("X-Twilio-Signature", signature)]), body)
}

#[test]
fn every_published_twilio_vector_verifies() {
    let vectors = json_fixture(fixture!("twilio/signature_vectors.json"));
    let twilio = twilio(vectors["auth_token"].as_str().unwrap());
    for vector in vectors["vectors"].as_array().unwrap() {
        let body = match vector.get("raw_body") {
            Some(raw) => raw.as_str().unwrap().to_string(),
            None => form(&vector["params"]),
        };
        let request = signed(
            vector["url"].as_str().unwrap(),
            body,
            vector["expected"].as_str().unwrap(),
        );
        assert_eq!(
            request.verify(&*twilio, at(0)),
            Ok(()),
            "{}",
            vector["name"]
        );
    }
}

#[test]
fn the_default_port_is_tried_both_ways() {
    let vectors = json_fixture(fixture!("twilio/signature_vectors.json"));
    let twilio = twilio("12345");
    let with_port = &vectors["vectors"][1];
    let body = form(&with_port["params"]);
    let signature = with_port["expected"].as_str().unwrap();
    for url in [
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        "https://mycompany.com/myapp.php?foo=1&bar=2",
    ] {
        assert_eq!(
            signed(url, body.clone(), signature).verify(&*twilio, at(0)),
            Ok(()),
            "{url}"
        );
    }
    let other_port = signed(
        "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
        body,
        signature,
    );
    assert_eq!(
        other_port.verify(&*twilio, at(0)),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn the_signed_twilio_webhooks_verify_and_resist_tampering() {
    for (file, body) in [
        (
            fixture!("twilio/inbound_sms_stop.json"),
            fixture!("twilio/inbound_sms_stop.form.txt"),
        ),
        (
            fixture!("twilio/status_callback_undelivered.json"),
            fixture!("twilio/status_callback_undelivered.form.txt"),
        ),
    ] {
        let example = json_fixture(file);
        let request = signed(
            example["url"].as_str().unwrap(),
            body.trim_end(),
            example["expected_signature"].as_str().unwrap(),
        );
        let good = twilio("12345");
        let signed_parts = [
            Signed::Body,
            Signed::Url,
            Signed::Header("x-twilio-signature"),
        ];
        assert_tampering_fails(&*good, &request, at(0), &signed_parts);
        assert_eq!(
            request.verify(&*twilio("12346"), at(0)),
            Err(VerifyError::SignatureMismatch)
        );
    }
}

#[test]
fn a_json_body_must_match_its_signed_hash() {
    let vectors = json_fixture(fixture!("twilio/signature_vectors.json"));
    let vector = &vectors["vectors"][6];
    let request = signed(
        vector["url"].as_str().unwrap(),
        "{\"property\": \"value\", \"boolean\": false}",
        vector["expected"].as_str().unwrap(),
    );
    assert_eq!(
        request.verify(&*twilio("12345"), at(0)),
        Err(VerifyError::BodyHashMismatch)
    );
}

#[test]
fn missing_or_malformed_twilio_headers_are_named() {
    let twilio = twilio("12345");
    let cases = [
        (
            headers(&[]),
            VerifyError::MissingHeader("x-twilio-signature"),
        ),
        (
            headers(&[("X-Twilio-Signature", "not base64!")]),
            VerifyError::MalformedHeader {
                header: "x-twilio-signature",
                reason: "not base64",
            },
        ),
        (
            headers(&[
                ("X-Twilio-Signature", "AAAA"),
                ("X-Twilio-Signature", "AAAA"),
            ]),
            VerifyError::MalformedHeader {
                header: "x-twilio-signature",
                reason: "sent more than once",
            },
        ),
    ];
    for (headers, expected) in cases {
        let request = Owned::post("https://example.com/x", headers, "a=b");
        assert_eq!(request.verify(&*twilio, at(0)), Err(expected));
    }
    let no_scheme = signed("example.com/x", "a=b", "AAAA");
    assert_eq!(
        no_scheme.verify(&*twilio, at(0)),
        Err(VerifyError::MalformedUrl)
    );
}

#[test]
fn a_twilio_inbound_sms_parses() {
    let body = fixture!("twilio/inbound_sms_stop.form.txt").trim_end();
    let request = Owned::post(
        "https://gateway.example.com/webhooks/twilio/inbound",
        headers(&[]),
        body,
    );
    let messages = twilio("12345").parse_inbound(&request.request()).unwrap();
    assert_eq!(
        messages,
        vec![InboundMessage {
            provider_message_id: "SM0123456789abcdef0123456789abcdef".into(),
            from: "+33612345678".into(),
            to: "+33757000000".into(),
            text: "STOP".into(),
            part: None,
        }]
    );
}

#[test]
fn a_twilio_status_callback_parses() {
    let body = fixture!("twilio/status_callback_undelivered.form.txt").trim_end();
    let request = Owned::post(
        "https://gateway.example.com/webhooks/twilio/status",
        headers(&[]),
        body,
    );
    let updates = twilio("12345").parse_status(&request.request()).unwrap();
    assert_eq!(
        updates,
        vec![StatusUpdate {
            provider_message_id: "SM0123456789abcdef0123456789abcdef".into(),
            status: DeliveryStatus::FailedPermanent(PermanentReason::InvalidNumber),
            error_code: Some("30005".into()),
            raw_status: "undelivered".into(),
        }]
    );
}

#[test]
fn malformed_twilio_payloads_are_refused_precisely() {
    let twilio = twilio("12345");
    let parse = |body: &[u8]| {
        let request = Owned::post("https://example.com/", headers(&[]), body.to_vec());
        twilio.parse_inbound(&request.request())
    };
    assert_eq!(
        parse(b"From=%2B33612345678&To=%2B33757000000&Body=hi"),
        Err(ParseError::MissingField("MessageSid"))
    );
    assert_eq!(
        parse(b"MessageSid=SM1&To=%2B33757000000&Body=hi"),
        Err(ParseError::MissingField("From"))
    );
    assert_eq!(
        parse(b"MessageSid=SM1&From=x&To=y"),
        Err(ParseError::MissingField("Body"))
    );
    assert_eq!(parse(&[0xff, 0xfe]), Err(ParseError::NotUtf8));
    assert_eq!(
        parse(b"MessageSid=SM1&MessageStatus=sent"),
        Err(ParseError::UnexpectedKind("status callback".into()))
    );
    let status = Owned::post(
        "https://example.com/",
        headers(&[]),
        "MessageSid=SM1&MessageStatus=teleported",
    );
    assert_eq!(
        twilio.parse_status(&status.request()),
        Err(ParseError::UnknownStatus("teleported".into()))
    );
}

#[test]
fn twilio_error_codes_map_to_their_documented_class() {
    use DeliveryStatus::*;
    use PermanentReason::*;
    let codes = json_fixture(fixture!("twilio/error_codes.json"));
    let expected = [
        ("21211", FailedPermanent(InvalidNumber)),
        ("21408", FailedPermanent(Other)),
        ("21610", FailedPermanent(OptedOutAtCarrier)),
        ("21612", FailedPermanent(Unreachable)),
        ("21614", FailedPermanent(InvalidNumber)),
        ("21635", FailedPermanent(Landline)),
        ("30003", FailedTemporary),
        ("30004", FailedPermanent(Blocked)),
        ("30005", FailedPermanent(InvalidNumber)),
        ("30006", FailedPermanent(Landline)),
        ("30007", FailedPermanent(Blocked)),
        ("30008", FailedTemporary),
        ("30002", FailedPermanent(Other)),
        ("21608", FailedPermanent(Other)),
    ];
    assert_eq!(
        expected.len(),
        codes["codes"].as_object().unwrap().len(),
        "every fixture code is in the table"
    );
    for (code, status) in expected {
        assert!(
            codes["codes"].get(code).is_some(),
            "{code} is a fixture code"
        );
        assert_eq!(
            crate::providers::twilio::failure(code),
            Some(status),
            "{code}"
        );
    }
}

#[test]
fn twilio_statuses_map_to_the_normalised_set() {
    use DeliveryStatus::*;
    use PermanentReason::*;
    let cases = [
        ("accepted", None, Queued),
        ("queued", None, Queued),
        ("sending", None, Queued),
        ("sent", None, Sent),
        ("delivered", None, Delivered),
        ("read", None, Delivered),
        ("undelivered", None, FailedTemporary),
        ("undelivered", Some("30006"), FailedPermanent(Landline)),
        ("undelivered", Some("99999"), FailedTemporary),
        ("failed", None, FailedPermanent(Other)),
        ("failed", Some("21610"), FailedPermanent(OptedOutAtCarrier)),
        ("canceled", None, FailedPermanent(Other)),
    ];
    for (raw, code, expected) in cases {
        assert_eq!(
            crate::providers::twilio::status(raw, code),
            Ok(expected),
            "{raw} {code:?}"
        );
    }
}
