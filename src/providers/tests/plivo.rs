use super::*;
use serde_json::json;

fn plivo(token: &str, version: &str) -> Box<dyn Provider> {
    provider(json!({
        "provider": "plivo", "auth_id": "MAXXXXXXXXXXXXXXXXXX", "auth_token": token,
        "signature_version": version, "senders": ["+33757000000"],
    }))
}

#[test]
fn the_published_plivo_v2_vectors_verify_or_fail_as_published() {
    let fixture = json_fixture(fixture!("plivo/signature_vectors.json"));
    for vector in fixture["v2"]["vectors"].as_array().unwrap() {
        let signature = vector
            .get("expected")
            .or_else(|| vector.get("signature"))
            .and_then(Value::as_str)
            .unwrap();
        let request = Owned::post(
            vector["url"].as_str().unwrap(),
            headers(&[
                ("X-Plivo-Signature-V2", signature),
                (
                    "X-Plivo-Signature-V2-Nonce",
                    vector["nonce"].as_str().unwrap(),
                ),
            ]),
            "",
        );
        let result = request.verify(&*plivo(vector["auth_token"].as_str().unwrap(), "v2"), at(0));
        let valid = vector
            .get("expected_valid")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        assert_eq!(result.is_ok(), valid, "{vector}");
    }
}

#[test]
fn a_plivo_v2_signature_covers_the_url_and_nonce_but_not_the_query() {
    let request = Owned::post(
        "https://answer.url",
        headers(&[
            (
                "X-Plivo-Signature-V2",
                "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc=",
            ),
            ("X-Plivo-Signature-V2-Nonce", "12345"),
        ]),
        "",
    );
    let plivo = plivo("my_auth_token", "v2");
    let signed = [
        Signed::Url,
        Signed::Header("x-plivo-signature-v2"),
        Signed::Header("x-plivo-signature-v2-nonce"),
    ];
    assert_tampering_fails(&*plivo, &request, at(0), &signed);
    let with_query = Owned {
        url: "https://answer.url?a=b".into(),
        ..request.clone()
    };
    assert_eq!(with_query.verify(&*plivo, at(0)), Ok(()));
}

/// The request a V3 vector describes: POST parameters as a form body, GET ones in the query.
fn v3_request(vector: &Value) -> Owned {
    let url = vector["url"].as_str().unwrap();
    let params = form(&vector["params"]);
    let headers = headers(&[
        ("X-Plivo-Signature-V3", vector["expected"].as_str().unwrap()),
        (
            "X-Plivo-Signature-V3-Nonce",
            vector["nonce"].as_str().unwrap(),
        ),
    ]);
    if vector["method"] == "GET" {
        let separator = if url.contains('?') { '&' } else { '?' };
        Owned {
            method: Method::GET,
            ..Owned::post(&format!("{url}{separator}{params}"), headers, "")
        }
    } else {
        Owned::post(url, headers, params)
    }
}

#[test]
fn every_published_plivo_v3_vector_verifies() {
    let fixture = json_fixture(fixture!("plivo/signature_vectors.json"));
    for vector in fixture["v3"]["vectors"].as_array().unwrap() {
        let plivo = plivo(vector["auth_token"].as_str().unwrap(), "v3");
        let request = v3_request(vector);
        let mut signed = vec![Signed::Url, Signed::Header("x-plivo-signature-v3")];
        if vector["method"] == "POST" {
            signed.push(Signed::Body);
        }
        assert_tampering_fails(&*plivo, &request, at(0), &signed);
        let other_token = super::super::build(&serde_json::from_value(json!({
            "provider": "plivo", "auth_id": "x", "auth_token": "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc5",
            "signature_version": "v3", "senders": ["+33757000000"],
        })).unwrap()).unwrap();
        assert_eq!(
            request.verify(&*other_token, at(0)),
            Err(VerifyError::SignatureMismatch)
        );
    }
}

#[test]
fn one_of_several_plivo_v3_signatures_is_enough() {
    let fixture = json_fixture(fixture!("plivo/signature_vectors.json"));
    let vector = &fixture["v3"]["vectors"][0];
    let mut request = v3_request(vector);
    let listed = format!("bm90IHRoaXMgb25l,{}", vector["expected"].as_str().unwrap());
    request.headers.insert(
        "x-plivo-signature-v3",
        HeaderValue::from_str(&listed).unwrap(),
    );
    assert_eq!(
        request.verify(&*plivo(vector["auth_token"].as_str().unwrap(), "v3"), at(0)),
        Ok(())
    );
}

#[test]
fn the_configured_plivo_version_is_the_one_required() {
    let v2_only = Owned::post(
        "https://answer.url",
        headers(&[
            (
                "X-Plivo-Signature-V2",
                "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc=",
            ),
            ("X-Plivo-Signature-V2-Nonce", "12345"),
        ]),
        "",
    );
    assert_eq!(
        v2_only.verify(&*plivo("my_auth_token", "v3"), at(0)),
        Err(VerifyError::MissingHeader("x-plivo-signature-v3"))
    );
    let no_nonce = Owned::post(
        "https://answer.url",
        headers(&[("X-Plivo-Signature-V2", "abc")]),
        "",
    );
    assert_eq!(
        no_nonce.verify(&*plivo("my_auth_token", "v2"), at(0)),
        Err(VerifyError::MissingHeader("x-plivo-signature-v2-nonce"))
    );
}

#[test]
fn a_plivo_inbound_message_parses() {
    let fixture = json_fixture(fixture!("plivo/message_callbacks.json"));
    let example = &fixture["inbound_message_url_params"]["example_DERIVED"];
    let request = Owned::post("https://example.com/in", headers(&[]), form(example));
    assert_eq!(
        plivo("t", "v2").parse_inbound(&request.request()),
        Ok(vec![InboundMessage {
            provider_message_id: "5b40a428-bfc7-4daf-9d06-726c558bf3b8".into(),
            from: "+33612345678".into(),
            to: "+33757000000".into(),
            text: "STOP".into(),
            part: None,
        }])
    );
    let get = Owned {
        method: Method::GET,
        ..Owned::post(
            &format!("https://example.com/in?{}", form(example)),
            headers(&[]),
            "",
        )
    };
    assert_eq!(
        plivo("t", "v2")
            .parse_inbound(&get.request())
            .unwrap()
            .len(),
        1
    );
    let mms = Owned::post(
        "https://example.com/in",
        headers(&[]),
        "From=1&To=2&Text=x&Type=mms&MessageUUID=u",
    );
    assert_eq!(
        plivo("t", "v2").parse_inbound(&mms.request()),
        Err(ParseError::UnexpectedKind("mms".into()))
    );
}

#[test]
fn a_plivo_status_callback_parses_with_its_documented_fields() {
    let fixture = json_fixture(fixture!("plivo/message_callbacks.json"));
    let fields = fixture["status_callback_params"]["fields"]
        .as_array()
        .unwrap();
    let mut params = serde_json::Map::new();
    for field in fields {
        params.insert(field.as_str().unwrap().into(), json!(""));
    }
    params.insert(
        "MessageUUID".into(),
        json!("5b40a428-bfc7-4daf-9d06-726c558bf3b8"),
    );
    params.insert("Status".into(), json!("undelivered"));
    params.insert("ErrorCode".into(), json!("50"));
    let request = Owned::post(
        "https://example.com/status",
        headers(&[]),
        form(&Value::Object(params)),
    );
    assert_eq!(
        plivo("t", "v2").parse_status(&request.request()),
        Ok(vec![StatusUpdate {
            provider_message_id: "5b40a428-bfc7-4daf-9d06-726c558bf3b8".into(),
            status: DeliveryStatus::FailedPermanent(PermanentReason::InvalidNumber),
            error_code: Some("50".into()),
            raw_status: "undelivered".into(),
        }])
    );
}

#[test]
fn plivo_statuses_and_error_codes_map_to_the_normalised_set() {
    use DeliveryStatus::*;
    use PermanentReason::*;
    let fixture = json_fixture(fixture!("plivo/message_callbacks.json"));
    let verified = fixture["error_codes_verified"].as_object().unwrap();
    let unverified = fixture["error_codes_UNVERIFIED_from_memory"]
        .as_object()
        .unwrap();
    let expected = [
        ("10", FailedPermanent(Other)),
        ("20", FailedTemporary),
        ("30", FailedPermanent(Blocked)),
        ("40", FailedPermanent(Other)),
        ("50", FailedPermanent(InvalidNumber)),
        ("60", FailedPermanent(Other)),
        ("70", FailedPermanent(Unreachable)),
        ("80", FailedTemporary),
        ("90", FailedPermanent(Unreachable)),
        ("100", FailedPermanent(Blocked)),
        ("110", FailedPermanent(Other)),
        ("200", FailedPermanent(OptedOutAtCarrier)),
        ("300", FailedTemporary),
        ("420", FailedTemporary),
        ("450", FailedPermanent(Other)),
        ("900", FailedPermanent(Other)),
        ("1000", FailedTemporary),
    ];
    assert_eq!(
        expected.len(),
        verified.len() + unverified.len() - 1,
        "every code but _source"
    );
    for (code, status) in expected {
        assert!(
            verified.contains_key(code) || unverified.contains_key(code),
            "{code}"
        );
        assert_eq!(
            crate::providers::plivo::failure(code),
            Some(status),
            "{code}"
        );
    }
    let statuses = [
        ("queued", None, Queued),
        ("sent", None, Sent),
        ("delivered", None, Delivered),
        ("read", None, Delivered),
        ("undelivered", None, FailedTemporary),
        ("failed", None, FailedPermanent(Other)),
        ("failed", Some("200"), FailedPermanent(OptedOutAtCarrier)),
    ];
    for (raw, code, expected) in statuses {
        assert_eq!(
            crate::providers::plivo::status(raw, code),
            Ok(expected),
            "{raw}"
        );
    }
}
