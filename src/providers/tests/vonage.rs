use super::*;
use crate::config::{Secret, VonageSignatureMethod};
use serde_json::json;

fn vonage_sms(secret: &str, method: &str) -> Box<dyn Provider> {
    provider(json!({
        "provider": "vonage", "api_key": "a1b2c3d", "api_secret": "s", "signature_secret": secret,
        "signature_method": method, "senders": ["+33757000000"],
    }))
}

fn vonage_messages(secret: &str) -> Box<dyn Provider> {
    provider(json!({
        "provider": "vonage", "api_key": "a1b2c3d", "api_secret": "s", "signature_secret": secret,
        "api": "messages", "senders": ["+447700900000"],
    }))
}

/// The configuration name of a method, from the fixture's key (`md5hash`, `sha256hmac`, …).
fn method_name(key: &str) -> &str {
    key.strip_suffix("hmac").unwrap_or(key)
}

fn form_with_sig(params: &Value, sig: &str) -> String {
    let mut params = params.clone();
    params["sig"] = json!(sig);
    form(&params)
}

fn timestamp_of(params: &Value) -> Timestamp {
    at(params["timestamp"].as_str().unwrap().parse().unwrap())
}

#[test]
fn every_published_vonage_sms_vector_verifies_with_its_method() {
    let fixture = json_fixture(fixture!("vonage/sms_signature_vectors.json"));
    let mut checked = 0;
    for set in fixture["sets"].as_array().unwrap() {
        let secret = set["secret"].as_str().unwrap();
        let mut cases: Vec<(Value, String, String)> = Vec::new();
        for (key, sig) in set["expected"].as_object().unwrap() {
            cases.push((
                set["params"].clone(),
                key.clone(),
                sig.as_str().unwrap().to_string(),
            ));
        }
        for extra in set
            .get("extra")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (key, sig) in extra.as_object().unwrap() {
                if key.ends_with("hash") || key.ends_with("hmac") {
                    cases.push((
                        extra["params"].clone(),
                        key.clone(),
                        sig.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
        for (params, key, sig) in cases {
            let vonage = vonage_sms(secret, method_name(&key));
            let request = Owned::post(
                "https://example.com/inbound",
                headers(&[]),
                form_with_sig(&params, &sig),
            );
            assert_eq!(
                request.verify(&*vonage, timestamp_of(&params)),
                Ok(()),
                "{} {key}",
                set["source"]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 20);
}

#[test]
fn a_blank_parameter_is_signed_either_way() {
    // The Java SDK leaves blank parameters out of the signed string; the others keep them.
    let params = json!({"a": "alphabet", "b": "", "timestamp": "2100"});
    let request = Owned::post(
        "https://example.com/inbound",
        headers(&[]),
        form_with_sig(&params, "a3368bf718ba104dcb392d8877e8eb2b"),
    );
    assert_eq!(
        request.verify(&*vonage_sms("abcde", "md5hash"), at(2100)),
        Ok(())
    );
}

#[test]
fn the_signed_vonage_inbound_example_verifies_parses_and_resists_tampering() {
    let example = json_fixture(fixture!("vonage/sms_inbound_signed_example.json"));
    let vonage = vonage_sms("my_secret_key_for_testing", "md5hash");
    let request = Owned::post(
        "https://example.com/webhooks/vonage/inbound",
        headers(&[]),
        example["form_body"].as_str().unwrap(),
    );
    let now = at(1385047698);
    assert_tampering_fails(&*vonage, &request, now, &[Signed::Body]);
    assert_eq!(
        request.verify(&*vonage_sms("my_secret_key_for_testinh", "md5hash"), now),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        request.verify(&*vonage_sms("my_secret_key_for_testing", "sha256"), now),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        request.verify(&*vonage, at(1385047698 + 301)),
        Err(VerifyError::OutsideReplayWindow {
            skew_secs: 301,
            window_secs: 300
        })
    );
    assert_eq!(request.verify(&*vonage, at(1385047698 - 300)), Ok(()));
    assert_eq!(
        vonage.parse_inbound(&request.request()),
        Ok(vec![InboundMessage {
            provider_message_id: "020000001B0FE827".into(),
            from: "+14843472194".into(),
            to: "+13239877404".into(),
            text: "Test again".into(),
            part: None,
        }])
    );
}

#[test]
fn the_same_parameters_verify_from_a_query_string_or_json() {
    let example = json_fixture(fixture!("vonage/sms_inbound_signed_example.json"));
    let vonage = vonage_sms("my_secret_key_for_testing", "md5hash");
    let query = format!(
        "https://example.com/in?{}",
        example["form_body"].as_str().unwrap()
    );
    let get = Owned {
        method: Method::GET,
        ..Owned::post(&query, headers(&[]), "")
    };
    assert_eq!(get.verify(&*vonage, at(1385047698)), Ok(()));
    let json_body = serde_json::to_vec(&example["params"]).unwrap();
    let post_json = Owned::post("https://example.com/in", headers(&[]), json_body);
    assert_eq!(post_json.verify(&*vonage, at(1385047698)), Ok(()));
}

#[test]
fn missing_vonage_parameters_are_named() {
    let vonage = vonage_sms("secret", "md5hash");
    let unsigned = Owned::post(
        "https://example.com/in",
        headers(&[]),
        "a=1&timestamp=1461605396",
    );
    assert_eq!(
        unsigned.verify(&*vonage, at(0)),
        Err(VerifyError::MissingParameter("sig"))
    );
    let sig = crate::providers::vonage::sign_params(
        &[("a", "1")],
        &Secret::new("secret"),
        VonageSignatureMethod::Md5Hash,
    );
    let undated = Owned::post(
        "https://example.com/in",
        headers(&[]),
        format!("a=1&sig={sig}"),
    );
    assert_eq!(
        undated.verify(&*vonage, at(0)),
        Err(VerifyError::MissingParameter("timestamp"))
    );
    let params = [("a", "1"), ("timestamp", "soon")];
    let sig = crate::providers::vonage::sign_params(
        &params,
        &Secret::new("secret"),
        VonageSignatureMethod::Md5Hash,
    );
    let bad_date = Owned::post(
        "https://example.com/in",
        headers(&[]),
        format!("a=1&timestamp=soon&sig={sig}"),
    );
    assert_eq!(
        bad_date.verify(&*vonage, at(0)),
        Err(VerifyError::MalformedParameter {
            parameter: "timestamp",
            reason: "not a number of seconds"
        })
    );
}

#[test]
fn a_vonage_delivery_receipt_parses() {
    let example = json_fixture(fixture!("vonage/sms_dlr_example.json"));
    let request = Owned::post(
        "https://example.com/status",
        headers(&[]),
        form(&example["payload"]),
    );
    assert_eq!(
        vonage_sms("s", "md5hash").parse_status(&request.request()),
        Ok(vec![StatusUpdate {
            provider_message_id: "0B00000127FDBC63".into(),
            status: DeliveryStatus::Delivered,
            error_code: None,
            raw_status: "delivered".into(),
        }])
    );
}

/// A channel whose inbound messages come through the Messages API still sends through the SMS
/// API, so its delivery receipts come in the SMS API's form, signed with `sig`: they verify and
/// parse, and a tampered one is refused.
#[test]
fn a_messages_api_channel_takes_the_sms_api_receipts_of_its_texts() {
    let example = json_fixture(fixture!("vonage/sms_dlr_example.json"));
    let mut params = example["payload"].clone();
    params["timestamp"] = json!("1700000000");
    let secret = "receipt-secret";
    let vonage = provider(json!({
        "provider": "vonage", "api_key": "a1b2c3d", "api_secret": "s", "signature_secret": secret,
        "signature_method": "sha256", "api": "messages", "senders": ["+447700900000"],
    }));
    let params_map: std::collections::BTreeMap<String, String> = params
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        })
        .collect();
    let signed: String = params_map
        .iter()
        .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
        .collect();
    let sig = hex::encode(crate::providers::wire::hmac_sha256(
        secret.as_bytes(),
        &[signed.as_bytes()],
    ));
    let request = Owned::post(
        "https://example.com/status",
        headers(&[]),
        form_with_sig(&params, &sig),
    );
    assert_eq!(request.verify(&*vonage, at(1_700_000_000)), Ok(()));
    assert_eq!(
        vonage.parse_status(&request.request()),
        Ok(vec![StatusUpdate {
            provider_message_id: "0B00000127FDBC63".into(),
            status: DeliveryStatus::Delivered,
            error_code: None,
            raw_status: "delivered".into(),
        }])
    );
    let tampered = Owned::post(
        "https://example.com/status",
        headers(&[]),
        form_with_sig(&params, &sig).replace("delivered", "failed"),
    );
    assert_eq!(
        tampered.verify(&*vonage, at(1_700_000_000)),
        Err(VerifyError::SignatureMismatch)
    );
    // Without a signature it is a Messages API request, and needs its JWT.
    let unsigned = Owned::post("https://example.com/status", headers(&[]), form(&params));
    assert_eq!(
        unsigned.verify(&*vonage, at(1_700_000_000)),
        Err(VerifyError::MissingHeader("authorization"))
    );
}

#[test]
fn the_inbound_sms_from_the_vonage_gist_parses() {
    let body = fixture!("vonage/sms_inbound_gist_form.txt")
        .lines()
        .next()
        .unwrap();
    let request = Owned::post("https://example.com/in", headers(&[]), body);
    let messages = vonage_sms("s", "md5hash")
        .parse_inbound(&request.request())
        .unwrap();
    assert_eq!(messages[0].provider_message_id, "030000000926C4C2");
    assert_eq!(messages[0].from, "FROM_NUMBER");
    assert_eq!(messages[0].text, "Hello!");
}

#[test]
fn vonage_receipt_error_codes_map_to_their_documented_meaning() {
    use DeliveryStatus::*;
    use PermanentReason::*;
    let codes = json_fixture(fixture!("vonage/dlr_err_codes.json"));
    let expected = [
        ("0", None),
        ("1", Some(FailedTemporary)),
        ("2", Some(FailedTemporary)),
        ("3", Some(FailedPermanent(Unreachable))),
        ("4", Some(FailedPermanent(Blocked))),
        ("5", Some(FailedTemporary)),
        ("6", Some(FailedPermanent(Blocked))),
        ("7", Some(FailedTemporary)),
        ("8", Some(FailedTemporary)),
        ("9", Some(FailedPermanent(OptedOutAtCarrier))),
        ("10", Some(FailedPermanent(Other))),
        ("11", Some(FailedPermanent(Unreachable))),
        ("12", Some(FailedPermanent(Unreachable))),
        ("13", Some(FailedPermanent(Blocked))),
        ("14", Some(FailedPermanent(Blocked))),
        ("15", Some(FailedTemporary)),
        ("50", Some(FailedPermanent(Blocked))),
        ("51", Some(FailedPermanent(Blocked))),
        ("52", Some(FailedPermanent(Blocked))),
        ("53", Some(FailedPermanent(Blocked))),
        ("54", Some(FailedPermanent(Other))),
        ("99", Some(FailedTemporary)),
    ];
    assert_eq!(expected.len(), codes["err_code"].as_object().unwrap().len());
    for (code, status) in expected {
        assert!(codes["err_code"].get(code).is_some(), "{code}");
        assert_eq!(
            crate::providers::vonage::receipt_failure(code),
            status,
            "{code}"
        );
    }
    let statuses = [
        ("accepted", "0", Sent),
        ("buffered", "0", Sent),
        ("delivered", "0", Delivered),
        ("expired", "0", FailedTemporary),
        ("failed", "3", FailedPermanent(Unreachable)),
        ("rejected", "9", FailedPermanent(OptedOutAtCarrier)),
        ("unknown", "0", Sent),
        ("unknown", "1", FailedTemporary),
    ];
    assert_eq!(
        statuses.len(),
        codes["status_values"].as_array().unwrap().len() + 1
    );
    for (raw, code, expected) in statuses {
        assert_eq!(
            crate::providers::vonage::receipt_status(raw, Some(code)),
            Ok(expected),
            "{raw}"
        );
    }
}

#[test]
fn the_published_messages_api_jwt_verifies_with_its_secret_only() {
    let fixture = json_fixture(fixture!("vonage/messages_signed_webhook_jwt.json"));
    let vector = &fixture["published_vector"];
    let token = vector["token"].as_str().unwrap();
    let secret = Secret::new(vector["signature_secret"].as_str().unwrap());
    assert!(crate::providers::vonage::verify_messages_jwt(token, &secret).is_ok());
    let wrong = Secret::new(vector["invalid_secret"].as_str().unwrap());
    assert_eq!(
        crate::providers::vonage::verify_messages_jwt(token, &wrong),
        Err(VerifyError::SignatureMismatch)
    );
}

fn messages_request(fixture: &Value) -> Owned {
    let vector = &fixture["derived_vector"];
    Owned::post(
        "https://example.com/webhooks/vonage/inbound",
        headers(&[(
            "Authorization",
            vector["authorization_header"].as_str().unwrap(),
        )]),
        vector["raw_body"].as_str().unwrap(),
    )
}

#[test]
fn a_signed_messages_api_webhook_verifies_and_parses() {
    let fixture = json_fixture(fixture!("vonage/messages_signed_webhook_jwt.json"));
    let vonage = vonage_messages(
        fixture["derived_vector"]["signature_secret"]
            .as_str()
            .unwrap(),
    );
    let request = messages_request(&fixture);
    let issued = 1738584865;
    assert_tampering_fails(
        &*vonage,
        &request,
        at(issued),
        &[Signed::Body, Signed::Header("authorization")],
    );
    let mut altered = request.clone();
    altered.body[10] ^= 1;
    assert_eq!(
        altered.verify(&*vonage, at(issued)),
        Err(VerifyError::ClaimMismatch("payload_hash"))
    );
    assert_eq!(
        request.verify(
            &*vonage_messages("0123456789abcdef0123456789abcdeg"),
            at(issued)
        ),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        request.verify(&*vonage, at(issued + 600)),
        Err(VerifyError::OutsideReplayWindow {
            skew_secs: 600,
            window_secs: 300
        })
    );
    assert_eq!(
        vonage.parse_inbound(&request.request()),
        Ok(vec![InboundMessage {
            provider_message_id: "aaaaaaaa-bbbb-cccc-dddd-0123456789ab".into(),
            from: "+447700900001".into(),
            to: "+447700900000".into(),
            text: "Hello From Vonage!".into(),
            part: None,
        }])
    );
}

#[test]
fn messages_api_authorization_problems_are_named() {
    let vonage = vonage_messages("secret");
    let cases = [
        (headers(&[]), VerifyError::MissingHeader("authorization")),
        (
            headers(&[("Authorization", "Basic abc")]),
            VerifyError::MalformedHeader {
                header: "authorization",
                reason: "not a Bearer token",
            },
        ),
        (
            headers(&[("Authorization", "Bearer a.b")]),
            VerifyError::MalformedToken("not three dot-separated parts"),
        ),
        (
            headers(&[("Authorization", "Bearer eyJhbGciOiJub25lIn0.e30.")]),
            VerifyError::UnsupportedAlgorithm("none".into()),
        ),
    ];
    for (headers, expected) in cases {
        let request = Owned::post("https://example.com/in", headers, "{}");
        assert_eq!(request.verify(&*vonage, at(0)), Err(expected));
    }
}

#[test]
fn a_messages_api_status_parses() {
    let body = json!({
        "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "to": "447700900000",
        "from": "447700900001", "timestamp": "2025-02-03T12:14:25Z", "status": "rejected",
        "error": {"type": "https://developer.vonage.com/api-errors/messages#1250", "title": 1250,
                  "detail": "illustrative"},
        "channel": "sms",
    });
    let request = Owned::post("https://example.com/status", headers(&[]), body.to_string());
    assert_eq!(
        vonage_messages("s").parse_status(&request.request()),
        Ok(vec![StatusUpdate {
            provider_message_id: "aaaaaaaa-bbbb-cccc-dddd-0123456789ab".into(),
            status: DeliveryStatus::FailedPermanent(PermanentReason::Other),
            error_code: Some("1250".into()),
            raw_status: "rejected".into(),
        }])
    );
}

fn part(id: &str, reference: &str, index: u16, total: u16, text: &str) -> InboundMessage {
    InboundMessage {
        provider_message_id: id.into(),
        from: "+33612345678".into(),
        to: "+33757000000".into(),
        text: text.into(),
        part: Some(PartInfo {
            reference: reference.into(),
            index,
            total,
        }),
    }
}

#[test]
fn a_concatenated_vonage_part_parses_with_its_position() {
    let body = "msisdn=33612345678&to=33757000000&messageId=0A1&text=Bonjour&type=text\
                &concat=true&concat-ref=42&concat-total=3&concat-part=2";
    let request = Owned::post("https://example.com/in", headers(&[]), body);
    let messages = vonage_sms("s", "md5hash")
        .parse_inbound(&request.request())
        .unwrap();
    assert_eq!(messages, vec![part("0A1", "42", 2, 3, "Bonjour")]);
    let single = "msisdn=33612345678&to=33757000000&messageId=0A2&text=Bonjour&type=text\
                  &concat=true&concat-ref=43&concat-total=1&concat-part=1";
    let request = Owned::post("https://example.com/in", headers(&[]), single);
    let whole = vonage_sms("s", "md5hash")
        .parse_inbound(&request.request())
        .unwrap();
    assert_eq!(whole[0].part, None, "one part of one is the whole message");
    for (bad, field) in [
        ("concat-part=0&concat-total=3", "concat-part"),
        ("concat-part=4&concat-total=3", "concat-part"),
        ("concat-part=x&concat-total=3", "concat-part"),
        ("concat-part=1&concat-total=70000", "concat-total"),
    ] {
        let body = format!("msisdn=1&to=2&messageId=3&text=t&concat=true&concat-ref=9&{bad}");
        let request = Owned::post("https://example.com/in", headers(&[]), body);
        assert!(
            matches!(
                vonage_sms("s", "md5hash").parse_inbound(&request.request()),
                Err(ParseError::InvalidField { field: f, .. }) if f == field
            ),
            "{bad}"
        );
    }
}

#[test]
fn parts_are_reassembled_in_order_once_all_are_there() {
    let parts = [
        part("c", "42", 3, 3, " merci"),
        part("a", "42", 1, 3, "Tout était"),
        part("x", "7", 2, 3, "another message"),
        part("b", "42", 2, 3, " parfait,"),
    ];
    let whole = reassemble(&parts).expect("complete");
    assert_eq!(whole.text, "Tout était parfait, merci");
    assert_eq!(whole.provider_message_id, "a");
    assert_eq!(whole.part, None);
}

#[test]
fn reassembly_waits_for_a_missing_part_and_ignores_duplicates() {
    let cases: Vec<(Vec<InboundMessage>, Option<&str>)> = vec![
        (vec![], None),
        (vec![part("a", "1", 1, 2, "x")], None),
        (
            vec![part("a", "1", 1, 2, "x"), part("a", "1", 1, 2, "x")],
            None,
        ),
        (
            vec![part("a", "1", 1, 2, "x"), part("b", "2", 2, 2, "y")],
            None,
        ),
        (
            vec![part("a", "1", 1, 2, "x"), part("b", "1", 2, 3, "y")],
            None,
        ),
        (
            vec![
                part("a", "1", 2, 2, "y"),
                part("a", "1", 2, 2, "y"),
                part("b", "1", 1, 2, "x"),
            ],
            Some("xy"),
        ),
        (vec![part("a", "1", 1, 1, "alone")], Some("alone")),
    ];
    for (parts, expected) in cases {
        assert_eq!(
            reassemble(&parts).map(|m| m.text).as_deref(),
            expected,
            "{parts:?}"
        );
    }
    let mut other_sender = part("b", "1", 2, 2, "y");
    other_sender.from = "+33699999999".into();
    assert_eq!(reassemble(&[part("a", "1", 1, 2, "x"), other_sender]), None);
    let whole = InboundMessage {
        part: None,
        ..part("a", "1", 1, 1, "x")
    };
    assert_eq!(reassemble(&[whole]), None);
}
