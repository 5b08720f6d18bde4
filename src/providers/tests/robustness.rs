//! Hostile input never panics: arbitrary bodies, header values and URLs only ever give errors.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn every_provider() -> Vec<Box<dyn Provider>> {
    let telnyx_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let senders = json!(["+33757000000"]);
    let mut channels = vec![
        json!({"provider": "console"}),
        json!({"provider": "twilio", "account_sid": "AC1", "auth_token": "t", "senders": senders}),
        json!({"provider": "plivo", "auth_id": "a", "auth_token": "t", "senders": senders}),
        json!({"provider": "plivo", "auth_id": "a", "auth_token": "t", "signature_version": "v3", "senders": senders}),
        json!({"provider": "telnyx", "api_key": "k", "public_key": telnyx_key, "senders": senders}),
        json!({"provider": "sinch", "service_plan_id": "p", "api_token": "t", "webhook_secret": "s", "senders": senders}),
        json!({"provider": "http", "secret": "s", "senders": senders}),
    ];
    for method in ["md5hash", "sha512"] {
        for api in ["sms", "messages"] {
            channels.push(json!({"provider": "vonage", "api_key": "k", "api_secret": "s",
                "signature_secret": "s", "signature_method": method, "api": api, "senders": senders}));
        }
    }
    for signature in ["jwt", "legacy", "bird"] {
        channels.push(
            json!({"provider": "messagebird", "access_key": "k", "signing_key": "s",
            "signature": signature, "senders": senders}),
        );
    }
    channels.into_iter().map(provider).collect()
}

const HEADER_NAMES: &[&str] = &[
    "x-twilio-signature",
    "authorization",
    "x-plivo-signature-v2",
    "x-plivo-signature-v2-nonce",
    "x-plivo-signature-v3",
    "x-plivo-signature-v3-nonce",
    "telnyx-signature-ed25519",
    "telnyx-timestamp",
    "x-sinch-webhook-signature",
    "x-sinch-webhook-signature-algorithm",
    "x-sinch-webhook-signature-nonce",
    "x-sinch-webhook-signature-timestamp",
    "messagebird-signature-jwt",
    "messagebird-signature",
    "messagebird-request-timestamp",
    "hearback-signature",
    "hearback-timestamp",
];

fn header_values() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
    let value = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[A-Za-z0-9+/=._, -]{0,120}".prop_map(String::into_bytes),
        Just(b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.x".to_vec()),
        Just(b"-99999999999999999999".to_vec()),
        Just(b"9223372036854775807".to_vec()),
    ];
    proptest::collection::vec((0..HEADER_NAMES.len(), value), 0..8)
}

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[a-zA-Z&=%+0-9-]{0,200}".prop_map(String::into_bytes),
        Just(br#"{"data":{"event_type":"message.received","payload":{"to":[]}}}"#.to_vec()),
        Just(br#"[{"id":"1","part":{"index":99999999999}}]"#.to_vec()),
        Just(b"concat=true&concat-part=1&concat-total=0&concat-ref=".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn verify_and_parse_never_panic(
        url in prop_oneof![Just("https://example.com:443/x?bodySHA256=00".to_string()), ".{0,60}"],
        header_values in header_values(),
        body in bodies(),
        now in any::<i64>().prop_map(|s| s.rem_euclid(8_000_000_000_000)),
    ) {
        let mut map = HeaderMap::new();
        for (index, value) in header_values {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.append(HEADER_NAMES[index], value);
            }
        }
        let now = Timestamp::from_millis(now).unwrap();
        for method in [Method::POST, Method::GET] {
            let request = WebhookRequest { method: &method, url: &url, headers: &map, body: &body };
            for provider in every_provider() {
                let _ = provider.verify(&request, now);
                let _ = provider.parse_inbound(&request);
                let _ = provider.parse_status(&request);
            }
        }
    }
}
