//! A whole conversation through each adapter, against the real server: an invitation is sent
//! through a stand-in of the provider's API, the customer's answer comes back as a webhook signed
//! the provider's way, and the next question goes out through the stand-in again.

use crate::auth::api_key::ApiKeyToken;
use crate::config::{ChannelConfig, ChannelName, Config, DatabaseConfig, DatabaseUrl};
use crate::storage::{Actor, NewApiKey, Storage};
use crate::time::Timestamp;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CUSTOMER: &str = "+33612345678";
const NUMBER: &str = "+33757000000";

/// A webhook as the provider would send it: extra headers and the body.
struct Webhook {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    content_type: &'static str,
}

/// One provider: its channel (pointed at the stand-in), what its API answers when it accepts a
/// message, and how it signs an inbound message.
struct Case {
    name: &'static str,
    channel: fn(&str) -> Value,
    accepted: fn(&str) -> (u16, Value),
    inbound: fn(url: &str, id: &str, text: &str) -> Webhook,
}

fn hmac_sha256(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn now_secs() -> String {
    (Timestamp::now().as_millis() / 1000).to_string()
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

fn telnyx_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

const CASES: &[Case] = &[
    Case {
        name: "twilio",
        channel: |base| {
            json!({"provider": "twilio", "account_sid": "AC0123456789abcdef0123456789abcdef",
                   "auth_token": "twilio-token", "senders": [NUMBER], "api_base_url": base})
        },
        accepted: |id| {
            (
                201,
                json!({"sid": id, "status": "queued", "num_segments": "1"}),
            )
        },
        inbound: |url, id, text| {
            let params = [
                ("MessageSid", id),
                ("From", CUSTOMER),
                ("To", NUMBER),
                ("Body", text),
            ];
            let mut sorted = params.to_vec();
            sorted.sort();
            let signed: String = sorted.iter().map(|(k, v)| format!("{k}{v}")).collect();
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"twilio-token").unwrap();
            mac.update(format!("{url}{signed}").as_bytes());
            Webhook {
                headers: vec![(
                    "x-twilio-signature".into(),
                    STANDARD.encode(mac.finalize().into_bytes()),
                )],
                body: form(&params),
                content_type: "application/x-www-form-urlencoded",
            }
        },
    },
    Case {
        name: "vonage",
        channel: |base| {
            json!({"provider": "vonage", "api_key": "a1b2c3d4", "api_secret": "vonage-secret",
                   "signature_secret": "sig", "signature_method": "sha256", "senders": [NUMBER],
                   "api_base_url": base})
        },
        accepted: |id| {
            (
                200,
                json!({"message-count": "1", "messages": [{"message-id": id, "status": "0"}]}),
            )
        },
        inbound: |_, id, text| {
            let timestamp = now_secs();
            let mut params = vec![
                ("msisdn", &CUSTOMER[1..]),
                ("to", &NUMBER[1..]),
                ("messageId", id),
                ("text", text),
                ("type", "text"),
                ("timestamp", timestamp.as_str()),
            ];
            params.sort();
            let signed: String = params
                .iter()
                .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
                .collect();
            let sig = hex::encode(hmac_sha256("sig", &[signed.as_bytes()]));
            params.push(("sig", &sig));
            Webhook {
                headers: vec![],
                body: form(&params),
                content_type: "application/x-www-form-urlencoded",
            }
        },
    },
    Case {
        name: "plivo",
        channel: |base| {
            json!({"provider": "plivo", "auth_id": "MAXXXXXXXXXXXXXXXXXX", "auth_token": "plivo-token",
                   "senders": [NUMBER], "api_base_url": base})
        },
        accepted: |id| {
            (
                202,
                json!({"message": "message(s) queued", "message_uuid": [id]}),
            )
        },
        inbound: |url, id, text| {
            let nonce = "12345678901234567890";
            let signature = STANDARD.encode(hmac_sha256(
                "plivo-token",
                &[url.as_bytes(), nonce.as_bytes()],
            ));
            Webhook {
                headers: vec![
                    ("x-plivo-signature-v2".into(), signature),
                    ("x-plivo-signature-v2-nonce".into(), nonce.into()),
                ],
                body: form(&[
                    ("From", &CUSTOMER[1..]),
                    ("To", &NUMBER[1..]),
                    ("Text", text),
                    ("MessageUUID", id),
                    ("Type", "sms"),
                ]),
                content_type: "application/x-www-form-urlencoded",
            }
        },
    },
    Case {
        name: "telnyx",
        channel: |base| {
            let public = STANDARD.encode(telnyx_key().verifying_key().to_bytes());
            json!({"provider": "telnyx", "api_key": "KEY0123456789ABCDEF", "public_key": public,
                   "senders": [NUMBER], "api_base_url": base})
        },
        accepted: |id| (200, json!({"data": {"id": id, "parts": 1}})),
        inbound: |_, id, text| {
            let body = serde_json::to_vec(&json!({"data": {"event_type": "message.received",
                "payload": {"id": id, "type": "SMS", "text": text,
                            "from": {"phone_number": CUSTOMER},
                            "to": [{"phone_number": NUMBER}]}}}))
            .unwrap();
            let timestamp = now_secs();
            let mut signed = format!("{timestamp}|").into_bytes();
            signed.extend_from_slice(&body);
            let signature = STANDARD.encode(telnyx_key().sign(&signed).to_bytes());
            Webhook {
                headers: vec![
                    ("telnyx-signature-ed25519".into(), signature),
                    ("telnyx-timestamp".into(), timestamp),
                ],
                body,
                content_type: "application/json",
            }
        },
    },
    Case {
        name: "sinch",
        channel: |base| {
            json!({"provider": "sinch", "service_plan_id": "plan123", "api_token": "sinch-token",
                   "webhook_secret": "hook", "senders": [NUMBER], "api_base_url": base})
        },
        accepted: |id| (201, json!({"id": id})),
        inbound: |_, id, text| {
            let body = serde_json::to_vec(&json!({"type": "mo_text", "id": id,
                "from": &CUSTOMER[1..], "to": &NUMBER[1..], "body": text}))
            .unwrap();
            let (nonce, timestamp) = ("01FJA8B4A7BM43YGWSG9GBV067", now_secs());
            let signature = STANDARD.encode(hmac_sha256(
                "hook",
                &[&body, b".", nonce.as_bytes(), b".", timestamp.as_bytes()],
            ));
            Webhook {
                headers: vec![
                    ("x-sinch-webhook-signature".into(), signature),
                    (
                        "x-sinch-webhook-signature-algorithm".into(),
                        "HmacSHA256".into(),
                    ),
                    ("x-sinch-webhook-signature-nonce".into(), nonce.into()),
                    ("x-sinch-webhook-signature-timestamp".into(), timestamp),
                ],
                body,
                content_type: "application/json",
            }
        },
    },
    Case {
        name: "messagebird",
        channel: |base| {
            json!({"provider": "messagebird", "access_key": "live_key", "signing_key": "sign",
                   "senders": [NUMBER], "api_base_url": base})
        },
        accepted: |id| (201, json!({"id": id})),
        inbound: |url, id, text| {
            let body = form(&[
                ("id", id),
                ("originator", &CUSTOMER[1..]),
                ("recipient", &NUMBER[1..]),
                ("body", text),
            ]);
            let now: i64 = now_secs().parse().unwrap();
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let claims = URL_SAFE_NO_PAD.encode(
                serde_json::to_vec(&json!({
                    "iss": "MessageBird", "nbf": now - 1, "exp": now + 60,
                    "url_hash": hex::encode(Sha256::digest(url.as_bytes())),
                    "payload_hash": hex::encode(Sha256::digest(&body)),
                }))
                .unwrap(),
            );
            let signing_input = format!("{header}.{claims}");
            let signature =
                URL_SAFE_NO_PAD.encode(hmac_sha256("sign", &[signing_input.as_bytes()]));
            Webhook {
                headers: vec![(
                    "messagebird-signature-jwt".into(),
                    format!("{signing_input}.{signature}"),
                )],
                body,
                content_type: "application/x-www-form-urlencoded",
            }
        },
    },
    Case {
        name: "http",
        channel: |base| {
            json!({"provider": "http", "secret": "gateway-secret", "senders": [NUMBER],
                   "api_base_url": format!("{base}/send")})
        },
        accepted: |id| (200, json!({"id": id})),
        inbound: |_, id, text| {
            let body = serde_json::to_vec(
                &json!({"id": id, "from": CUSTOMER, "to": NUMBER, "text": text}),
            )
            .unwrap();
            let timestamp = now_secs();
            let signature = crate::providers::http::sign(
                &crate::config::Secret::new("gateway-secret"),
                &timestamp,
                &body,
            );
            Webhook {
                headers: vec![
                    ("hearback-signature".into(), signature),
                    ("hearback-timestamp".into(), timestamp),
                ],
                body,
                content_type: "application/json",
            }
        },
    },
];

/// The provider's API: accepts every message with a fresh id and keeps what it was sent.
async fn api_stand_in(accepted: fn(&str) -> (u16, Value)) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let record = Arc::clone(&received);
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let record = Arc::clone(&record);
        async move {
            let mut seen = record.lock().unwrap();
            seen.push(body.to_vec());
            let (status, answer) = accepted(&format!("prov-{}", seen.len()));
            (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn wait_for(what: &str, received: &Mutex<Vec<Vec<u8>>>, count: usize) {
    // Up to 30 s: a bound for a stuck send, not a speed check. A first run after a fresh build,
    // with every test starting at once on two cores, once took more than 6 s.
    for _ in 0..1_500 {
        if received.lock().unwrap().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{what}: the stand-in received {} messages, expected {count}",
        received.lock().unwrap().len()
    );
}

async fn converse(case: &Case) {
    let (api, received) = api_stand_in(case.accepted).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        database: DatabaseConfig {
            url: DatabaseUrl::parse(&format!("sqlite://{}", dir.path().join("hb.db").display()))
                .unwrap(),
            ..DatabaseConfig::default()
        },
        ..Config::default()
    };
    config.flows.dir = concat!(env!("CARGO_MANIFEST_DIR"), "/flows").into();
    config.jobs.poll_interval_ms = 20;
    // The first question goes out at once, whatever the hour the test runs at.
    config.dispatch.immediate = true;
    let channel: ChannelConfig = serde_json::from_value((case.channel)(&api)).unwrap();
    config
        .channels
        .insert(ChannelName::parse(case.name).unwrap(), channel);
    let storage = crate::server::open_storage(&config, true).await.unwrap();
    let token = ApiKeyToken::generate();
    storage
        .create_api_key(
            &NewApiKey {
                id: token.id().into(),
                name: "crm".into(),
                secret_hash: token.secret_hash(),
                user_id: None,
            },
            &Actor::Cli,
            Timestamp::now(),
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = {
        let (config, storage, shutdown) = (config.clone(), storage.clone(), shutdown.clone());
        tokio::spawn(async move { crate::server::run(&config, storage, listener, shutdown).await })
    };
    let client = reqwest::Client::new();
    let invitation: Value = client
        .post(format!("{base}/api/v1/invitations"))
        .bearer_auth(token.reveal())
        .json(&json!({"event_id": "order-1", "flow": "delivery", "phone": CUSTOMER, "locale": "fr",
                      "variables": {"first_name": "Ana", "store": "Lyon 2", "order_date": "12/11"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invitation["channel"], case.name, "{invitation}");
    wait_for(case.name, &received, 1).await;
    let first = String::from_utf8_lossy(&received.lock().unwrap()[0]).to_string();
    assert!(
        first.contains("Ana"),
        "{}: the question went out: {first}",
        case.name
    );

    let url = format!("{base}/webhooks/{}/inbound", case.name);
    let webhook = (case.inbound)(&url, "in-1", "9");
    let mut request = client
        .post(&url)
        .header("content-type", webhook.content_type)
        .body(webhook.body.clone());
    for (name, value) in &webhook.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}: {:?}",
        case.name,
        response.text().await
    );
    wait_for(case.name, &received, 2).await;

    let conversation = invitation["conversation_id"].as_str().unwrap();
    let answers = storage.conversation_answers(conversation).await.unwrap();
    assert_eq!(answers.len(), 1, "{}", case.name);
    assert_eq!(answers[0].score, Some(9), "{}", case.name);
    shutdown.cancel();
    server.await.unwrap().unwrap();
    close(storage).await;
}

async fn close(storage: Storage) {
    storage.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_runs_through_every_adapter() {
    for case in CASES {
        converse(case).await;
    }
}
