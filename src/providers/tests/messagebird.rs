use super::*;
use serde_json::json;

fn messagebird(key: &str, signature: &str) -> Box<dyn Provider> {
    provider(json!({
        "provider": "messagebird", "access_key": "live_x", "signing_key": key,
        "signature": signature, "senders": ["+31612345678"],
    }))
}

/// What the reference suite says each invalid case fails with.
fn expected_error(reason: &str) -> VerifyError {
    match reason {
        "invalid jwt: claim nbf is in the future" => VerifyError::TokenNotYetValid,
        "invalid jwt: claim exp is in the past" => VerifyError::TokenExpired,
        "invalid jwt: claim url_hash is invalid" => VerifyError::ClaimMismatch("url_hash"),
        "invalid jwt: claim payload_hash is invalid" => VerifyError::ClaimMismatch("payload_hash"),
        "invalid jwt: signature is invalid" => VerifyError::SignatureMismatch,
        "invalid jwt: claim payload_hash is set but actual payload is missing" => {
            VerifyError::ClaimMismatch("payload_hash")
        }
        "invalid jwt: claim payload_hash is not set but payload is present" => {
            VerifyError::MissingClaim("payload_hash")
        }
        "invalid jwt: signing method none is invalid" => {
            VerifyError::UnsupportedAlgorithm("none".into())
        }
        other => panic!("unexpected reason {other}"),
    }
}

#[test]
fn every_messagebird_jwt_reference_case_passes_or_fails_as_published() {
    let cases = json_fixture(fixture!("messagebird/signature_jwt_reference.json"));
    let cases = cases.as_array().unwrap();
    let shared_secret = cases[0]["secret"].as_str().unwrap();
    let mut valid = 0;
    for case in cases {
        // The `none` case has no secret: any key must refuse it.
        let secret = case
            .get("secret")
            .and_then(Value::as_str)
            .unwrap_or(shared_secret);
        let now =
            chrono::DateTime::parse_from_rfc3339(case["timestamp"].as_str().unwrap()).unwrap();
        let request = Owned {
            method: Method::from_bytes(case["method"].as_str().unwrap().as_bytes()).unwrap(),
            ..Owned::post(
                case["url"].as_str().unwrap(),
                headers(&[("MessageBird-Signature-JWT", case["token"].as_str().unwrap())]),
                case.get("payload").and_then(Value::as_str).unwrap_or(""),
            )
        };
        let result = request.verify(&*messagebird(secret, "jwt"), at(now.timestamp()));
        if case["valid"] == true {
            assert_eq!(result, Ok(()), "{}", case["name"]);
            valid += 1;
        } else {
            let reason = case["reason"].as_str().unwrap();
            assert_eq!(result, Err(expected_error(reason)), "{}", case["name"]);
        }
    }
    assert_eq!((cases.len(), valid), (43, 23));
}

#[test]
fn a_messagebird_jwt_resists_tampering_with_url_body_header_and_key() {
    let cases = json_fixture(fixture!("messagebird/signature_jwt_reference.json"));
    let case = &cases[13];
    assert_eq!(
        case["name"],
        "Valid JWT with URL parameters and payload - POST"
    );
    let request = Owned::post(
        case["url"].as_str().unwrap(),
        headers(&[("MessageBird-Signature-JWT", case["token"].as_str().unwrap())]),
        case["payload"].as_str().unwrap(),
    );
    let now = at(1625479200);
    let secret = case["secret"].as_str().unwrap();
    let signed = [
        Signed::Body,
        Signed::Url,
        Signed::Header("messagebird-signature-jwt"),
    ];
    assert_tampering_fails(&*messagebird(secret, "jwt"), &request, now, &signed);
    let other_key = format!("{}0", &secret[..secret.len() - 1]);
    assert_eq!(
        request.verify(&*messagebird(&other_key, "jwt"), now),
        Err(VerifyError::SignatureMismatch)
    );
    let mut no_header = request.clone();
    no_header.headers.clear();
    assert_eq!(
        no_header.verify(&*messagebird(secret, "jwt"), now),
        Err(VerifyError::MissingHeader("messagebird-signature-jwt"))
    );
}

fn legacy_request(vector: &Value) -> Owned {
    let query = vector["query"].as_str().unwrap();
    let url = if query.is_empty() {
        "https://example.com/webhook".to_string()
    } else {
        format!("https://example.com/webhook?{query}")
    };
    Owned::post(
        &url,
        headers(&[
            (
                "MessageBird-Signature",
                vector["expected"].as_str().unwrap(),
            ),
            (
                "MessageBird-Request-Timestamp",
                vector["timestamp"].as_str().unwrap(),
            ),
        ]),
        vector["body"].as_str().unwrap(),
    )
}

#[test]
fn every_legacy_messagebird_vector_verifies() {
    let fixture = json_fixture(fixture!("messagebird/signature_legacy_vectors.json"));
    for vector in fixture["vectors"].as_array().unwrap() {
        let request = legacy_request(vector);
        let provider = messagebird(vector["key"].as_str().unwrap(), "legacy");
        let mut signed = vec![
            Signed::Header("messagebird-signature"),
            Signed::Header("messagebird-request-timestamp"),
        ];
        if !vector["body"].as_str().unwrap().is_empty() {
            signed.push(Signed::Body);
        }
        assert_tampering_fails(&*provider, &request, at(1544544948), &signed);
        assert_eq!(
            request.verify(&*provider, at(1544544948 + 301)),
            Err(VerifyError::OutsideReplayWindow {
                skew_secs: 301,
                window_secs: 300
            })
        );
    }
}

#[test]
fn a_legacy_signature_covers_the_query_in_any_order() {
    let fixture = json_fixture(fixture!("messagebird/signature_legacy_vectors.json"));
    let vector = &fixture["vectors"][0];
    let mut request = legacy_request(vector);
    request.url = "https://example.com/webhook?def=bar&abc=foo".into();
    let provider = messagebird("other-secret", "legacy");
    assert_eq!(request.verify(&*provider, at(1544544948)), Ok(()));
    request.url = "https://example.com/webhook?def=baz&abc=foo".into();
    assert_eq!(
        request.verify(&*provider, at(1544544948)),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn the_bird_vector_verifies_and_resists_tampering() {
    let vector = json_fixture(fixture!("messagebird/bird_signature_derived.json"));
    let request = Owned::post(
        vector["url"].as_str().unwrap(),
        headers(&[
            (
                "messagebird-signature",
                vector["expected"].as_str().unwrap(),
            ),
            (
                "messagebird-request-timestamp",
                vector["timestamp"].as_str().unwrap(),
            ),
        ]),
        vector["raw_body"].as_str().unwrap(),
    );
    let bird = messagebird(vector["signing_key"].as_str().unwrap(), "bird");
    let signed = [
        Signed::Body,
        Signed::Url,
        Signed::Header("messagebird-signature"),
    ];
    assert_tampering_fails(&*bird, &request, at(1719823259), &signed);
    assert_eq!(
        request.verify(&*messagebird("secureSigningKez", "bird"), at(1719823259)),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn messagebird_parameters_parse_into_messages_and_statuses() {
    // Illustrative: the parameter names of MessageBird's incoming-message and status-report
    // callbacks, values made up.
    let messagebird = messagebird("k", "jwt");
    let inbound = Owned::post(
        "https://example.com/in?id=e8077d803532c0b5937c639b60216938&recipient=31970102030\
         &originator=31612345678&body=9+merci&createdDatetime=2016-05-03T14%3A26%3A57%2B00%3A00",
        headers(&[]),
        "",
    );
    assert_eq!(
        messagebird.parse_inbound(&inbound.request()),
        Ok(vec![InboundMessage {
            provider_message_id: "e8077d803532c0b5937c639b60216938".into(),
            from: "+31612345678".into(),
            to: "+31970102030".into(),
            text: "9 merci".into(),
            part: None,
        }])
    );
    let status = Owned::post(
        "https://example.com/status",
        headers(&[]),
        "id=b4b2a1&recipient=31612345678&status=delivery_failed&statusReason=unknown+subscriber\
         &statusErrorCode=1&statusDatetime=2021-07-05T10%3A00%3A00%2B00%3A00",
    );
    assert_eq!(
        messagebird.parse_status(&status.request()),
        Ok(vec![StatusUpdate {
            provider_message_id: "b4b2a1".into(),
            status: DeliveryStatus::FailedTemporary,
            error_code: Some("1".into()),
            raw_status: "delivery_failed".into(),
        }])
    );
    let bird = Owned::post(
        "https://example.com/in",
        headers(&[]),
        fixture!("messagebird/bird_signature_derived.json"),
    );
    assert_eq!(
        messagebird.parse_inbound(&bird.request()),
        Err(ParseError::UnexpectedKind("JSON event".into()))
    );
}

#[test]
fn messagebird_statuses_map_to_the_normalised_set() {
    use DeliveryStatus::*;
    for (raw, expected) in [
        ("scheduled", Queued),
        ("sent", Sent),
        ("buffered", Sent),
        ("delivered", Delivered),
        ("expired", FailedTemporary),
        ("delivery_failed", FailedTemporary),
    ] {
        assert_eq!(
            crate::providers::messagebird::status(raw),
            Ok(expected),
            "{raw}"
        );
    }
    assert_eq!(
        crate::providers::messagebird::status("lost"),
        Err(ParseError::UnknownStatus("lost".into()))
    );
}
