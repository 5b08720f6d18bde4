use super::*;
use serde_json::json;

fn telnyx(public_key: &str) -> Box<dyn Provider> {
    provider(json!({
        "provider": "telnyx", "api_key": "KEY", "public_key": public_key,
        "senders": ["+18445550001"],
    }))
}

fn derived() -> (Value, Owned) {
    let vector = json_fixture(fixture!("telnyx/ed25519_derived_vector.json"));
    let request = Owned::post(
        "https://example.com/webhooks",
        headers(&[
            (
                "telnyx-signature-ed25519",
                vector["headers"]["telnyx-signature-ed25519"]
                    .as_str()
                    .unwrap(),
            ),
            (
                "telnyx-timestamp",
                vector["headers"]["telnyx-timestamp"].as_str().unwrap(),
            ),
        ]),
        vector["raw_body"].as_str().unwrap(),
    );
    (vector, request)
}

#[test]
fn the_telnyx_vector_verifies_and_resists_tampering() {
    let (vector, request) = derived();
    let good = telnyx(vector["public_key_base64"].as_str().unwrap());
    let signed = [
        Signed::Body,
        Signed::Header("telnyx-signature-ed25519"),
        Signed::Header("telnyx-timestamp"),
    ];
    assert_tampering_fails(&*good, &request, at(1700000000), &signed);
    // The fixture's negative case: the next second, same signature.
    let mut next_second = request.clone();
    next_second
        .headers
        .insert("telnyx-timestamp", HeaderValue::from_static("1700000001"));
    assert_eq!(
        next_second.verify(&*good, at(1700000000)),
        Err(VerifyError::SignatureMismatch)
    );
    // Another key (RFC 8032 test 2's public key) does not verify it.
    let other = telnyx("PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=");
    assert_eq!(
        request.verify(&*other, at(1700000000)),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn a_telnyx_signature_outside_five_minutes_is_refused() {
    let (vector, request) = derived();
    let telnyx = telnyx(vector["public_key_base64"].as_str().unwrap());
    assert_eq!(request.verify(&*telnyx, at(1700000300)), Ok(()));
    assert_eq!(request.verify(&*telnyx, at(1699999700)), Ok(()));
    assert_eq!(
        request.verify(&*telnyx, at(1700000301)),
        Err(VerifyError::OutsideReplayWindow {
            skew_secs: 301,
            window_secs: 300
        })
    );
    assert_eq!(
        request.verify(&*telnyx, at(1699999000)),
        Err(VerifyError::OutsideReplayWindow {
            skew_secs: -1000,
            window_secs: 300
        })
    );
}

#[test]
fn missing_or_malformed_telnyx_headers_are_named() {
    let (vector, request) = derived();
    let telnyx = telnyx(vector["public_key_base64"].as_str().unwrap());
    let mut no_timestamp = request.clone();
    no_timestamp.headers.remove("telnyx-timestamp");
    assert_eq!(
        no_timestamp.verify(&*telnyx, at(0)),
        Err(VerifyError::MissingHeader("telnyx-timestamp"))
    );
    let mut no_signature = request.clone();
    no_signature.headers.remove("telnyx-signature-ed25519");
    assert_eq!(
        no_signature.verify(&*telnyx, at(0)),
        Err(VerifyError::MissingHeader("telnyx-signature-ed25519"))
    );
    let mut short = request.clone();
    short
        .headers
        .insert("telnyx-signature-ed25519", HeaderValue::from_static("AAAA"));
    assert_eq!(
        short.verify(&*telnyx, at(0)),
        Err(VerifyError::MalformedHeader {
            header: "telnyx-signature-ed25519",
            reason: "an Ed25519 signature is 64 bytes",
        })
    );
    let mut wordy = request.clone();
    wordy
        .headers
        .insert("telnyx-timestamp", HeaderValue::from_static("yesterday"));
    assert_eq!(
        wordy.verify(&*telnyx, at(0)),
        Err(VerifyError::MalformedHeader {
            header: "telnyx-timestamp",
            reason: "not a number of seconds"
        })
    );
}

#[test]
fn a_bad_telnyx_public_key_is_refused_when_the_channel_is_built() {
    for (key, reason) in [
        ("not base64!", "not base64"),
        ("AAAA", "an Ed25519 public key is 32 bytes"),
    ] {
        let config: ChannelConfig = serde_json::from_value(json!({
            "provider": "telnyx", "api_key": "KEY", "public_key": key, "senders": ["+18445550001"],
        }))
        .unwrap();
        assert_eq!(
            build(&config).err(),
            Some(BuildError::Invalid {
                key: "public_key",
                reason: reason.into()
            })
        );
    }
}

#[test]
fn telnyx_inbound_messages_parse() {
    let (vector, request) = derived();
    let telnyx = telnyx(vector["public_key_base64"].as_str().unwrap());
    assert_eq!(
        telnyx.parse_inbound(&request.request()),
        Ok(vec![InboundMessage {
            provider_message_id: "7ee4241c-f127-47e5-9c34-3aac291f8058".into(),
            from: "+18665550001".into(),
            to: "+18445550001".into(),
            text: "STOP".into(),
            part: None,
        }])
    );
    let docs = json_fixture(fixture!("telnyx/inbound_message_docs_example.json"));
    let body = docs["payload_partial"].to_string();
    let request = Owned::post("https://example.com/", headers(&[]), body);
    let messages = telnyx.parse_inbound(&request.request()).unwrap();
    assert_eq!(messages[0].text, "Hello, World!");
    assert_eq!(
        telnyx.parse_status(&request.request()),
        Err(ParseError::UnexpectedKind("message.received".into()))
    );
}

#[test]
fn a_telnyx_finalized_event_parses_into_a_status() {
    // Illustrative: the shape of the docs' message events, with a delivery failure.
    let body = json!({"data": {"event_type": "message.finalized", "id": "e1", "payload": {
        "id": "40385f64-5717-4562-b3fc-2c963f66afa6", "direction": "outbound",
        "to": [{"phone_number": "+33612345678", "status": "delivery_failed"}],
        "errors": [{"code": "40300", "title": "Blocked due to STOP message"}]}}});
    let request = Owned::post("https://example.com/", headers(&[]), body.to_string());
    let (vector, _) = derived();
    assert_eq!(
        telnyx(vector["public_key_base64"].as_str().unwrap()).parse_status(&request.request()),
        Ok(vec![StatusUpdate {
            provider_message_id: "40385f64-5717-4562-b3fc-2c963f66afa6".into(),
            status: DeliveryStatus::FailedPermanent(PermanentReason::OptedOutAtCarrier),
            error_code: Some("40300".into()),
            raw_status: "delivery_failed".into(),
        }])
    );
}

#[test]
fn telnyx_statuses_and_error_codes_map_to_the_normalised_set() {
    use DeliveryStatus::*;
    use PermanentReason::*;
    let docs = json_fixture(fixture!("telnyx/inbound_message_docs_example.json"));
    let statuses = [
        ("queued", Queued),
        ("sending", Queued),
        ("sent", Sent),
        ("delivered", Delivered),
        ("sending_failed", FailedPermanent(Other)),
        ("delivery_failed", FailedTemporary),
        ("delivery_unconfirmed", Sent),
    ];
    let documented = docs["outbound_to_status_enum"].as_array().unwrap();
    assert_eq!(statuses.len(), documented.len());
    for (raw, expected) in statuses {
        assert!(documented.contains(&json!(raw)), "{raw}");
        assert_eq!(
            crate::providers::telnyx::status(raw, None),
            Ok(expected),
            "{raw}"
        );
    }
    let codes = [
        ("40001", FailedPermanent(Unreachable)),
        ("40002", FailedTemporary),
        ("40003", FailedPermanent(Blocked)),
        ("40004", FailedPermanent(Blocked)),
        ("40005", FailedTemporary),
        ("40006", FailedTemporary),
        ("40008", FailedTemporary),
        ("40009", FailedPermanent(Other)),
        ("40300", FailedPermanent(OptedOutAtCarrier)),
    ];
    let documented = docs["error_codes_from_docs"].as_object().unwrap();
    assert_eq!(codes.len(), documented.len() - 1);
    for (code, expected) in codes {
        assert!(documented.contains_key(code), "{code}");
        assert_eq!(
            crate::providers::telnyx::failure(code),
            Some(expected),
            "{code}"
        );
    }
}
