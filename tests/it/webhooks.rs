//! Provider webhooks through the real server: verified, recorded exactly once, opt-outs honoured.

use crate::support::{TestDb, TestServer, twilio_signature};
use hearback::config::Config;
use hearback::phone::Phone;
use hearback::storage::{ConsentChange, InboundOutcome, NewInbound, NewStatus};
use hearback::time::Timestamp;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const TWILIO_TOKEN: &str = "12345";

/// A console channel and a Twilio channel, on the test database.
fn config(db: &TestDb) -> Config {
    db.config_from_toml(&format!(
        "[channels.console]\nprovider = \"console\"\n\n[channels.twilio]\nprovider = \"twilio\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"{TWILIO_TOKEN}\"\nsenders = [\"+33757000000\"]\n"
    ))
}

fn console_sms(id: &str, from: &str, text: &str) -> Value {
    json!({ "id": id, "from": from, "to": "+33600000000", "text": text })
}

async fn post_console(client: &Client, server: &TestServer, body: &Value) -> reqwest::Response {
    client
        .post(server.url("/webhooks/console/inbound"))
        .json(body)
        .send()
        .await
        .unwrap()
}

fn phone(raw: &str) -> Phone {
    Phone::parse(raw, None).unwrap()
}

#[tokio::test]
async fn a_provider_retry_is_answered_200_and_recorded_once() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(config(&db), db.storage.clone()).await;
    let client = Client::new();
    let sms = console_sms("SM1", "+33612345678", "9 super livraison");
    for _ in 0..3 {
        assert_eq!(
            post_console(&client, &server, &sms).await.status(),
            StatusCode::OK
        );
    }
    let contact = db
        .storage
        .contact_by_phone(&phone("+33612345678"))
        .await
        .unwrap()
        .expect("the contact exists");
    let messages = db.storage.contact_messages(&contact.id).await.unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].body, "9 super livraison");
    assert_eq!(messages[0].direction, "inbound");
    assert_eq!(messages[0].provider_message_id.as_deref(), Some("SM1"));
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn stop_opts_the_number_out_once_and_start_opts_it_back_in() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(config(&db), db.storage.clone()).await;
    let client = Client::new();
    for (id, text) in [("SM1", "STOP merci"), ("SM2", "stop"), ("SM3", "START")] {
        assert_eq!(
            post_console(&client, &server, &console_sms(id, "+33612345678", text))
                .await
                .status(),
            StatusCode::OK
        );
    }
    let contact = db
        .storage
        .contact_by_phone(&phone("+33612345678"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.opted_out_at, None, "START came last");
    let history: Vec<String> = db
        .storage
        .contact_consents(&contact.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.change)
        .collect();
    assert_eq!(
        history,
        ["opted_out", "opted_in"],
        "the second STOP changed nothing"
    );
    let events = db.storage.outbox_after(0, 10).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["contact.opted_out", "contact.opted_in"]);
    assert_eq!(events[0].contact_id.as_deref(), Some(contact.id.as_str()));
    assert_eq!(events[0].payload.0["contact"]["phone"], "+33612345678");
    assert!(events[0].event_id.starts_with("evt_"));
    let messages = db.storage.contact_messages(&contact.id).await.unwrap();
    let inbound = messages.iter().filter(|m| m.direction == "inbound").count();
    assert_eq!(inbound, 3, "every message is kept");
    let replies: Vec<&str> = messages
        .iter()
        .filter(|m| m.direction == "outbound")
        .map(|m| m.body.as_str())
        .collect();
    assert_eq!(
        replies.len(),
        2,
        "one confirmation per change, none for the second STOP: {replies:?}"
    );
    assert!(replies[0].contains("START") && replies[1].contains("STOP"));
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_signed_twilio_message_is_accepted_with_empty_twiml_and_a_forged_one_is_refused() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(config(&db), db.storage.clone()).await;
    let client = Client::new();
    let url = server.url("/webhooks/twilio/inbound");
    let params = [
        ("MessageSid", "SM0123"),
        ("From", "+33612345678"),
        ("To", "+33757000000"),
        ("Body", "8"),
    ];
    let form = |params: &[(&str, &str)]| serde_urlencoded_body(params);

    let forged = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(TWILIO_TOKEN, &url, &[("Body", "10")]),
        )
        .body(form(&params))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let error: Value = forged.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_signature");
    assert!(
        db.storage
            .contact_by_phone(&phone("+33612345678"))
            .await
            .unwrap()
            .is_none(),
        "a forged webhook stores nothing"
    );

    let unsigned = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&params))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);

    let signed = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(TWILIO_TOKEN, &url, &params),
        )
        .body(form(&params))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::OK);
    assert_eq!(signed.headers()["content-type"], "text/xml");
    assert!(signed.text().await.unwrap().contains("<Response/>"));
    let contact = db
        .storage
        .contact_by_phone(&phone("+33612345678"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.storage.contact_messages(&contact.id).await.unwrap()[0].body,
        "8"
    );
    server.stop().await;
    db.cleanup().await;
}

fn serde_urlencoded_body(params: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

#[tokio::test]
async fn bad_webhooks_get_a_precise_error() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(config(&db), db.storage.clone()).await;
    let client = Client::new();
    let unknown = client
        .post(server.url("/webhooks/nowhere/inbound"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let malformed = client
        .post(server.url("/webhooks/console/inbound"))
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_payload");
    let huge = console_sms("SM9", "+33612345678", &"x".repeat(100 * 1024));
    let too_large = post_console(&client, &server, &huge).await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = too_large.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large");
    assert!(
        db.storage
            .contact_by_phone(&phone("+33612345678"))
            .await
            .unwrap()
            .is_none()
    );
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_status_callback_is_kept_once_even_before_its_message_exists() {
    let db = TestDb::sqlite().await;
    let server = TestServer::start(config(&db), db.storage.clone()).await;
    let client = Client::new();
    let status = json!({ "id": "OUT-1", "status": "delivered" });
    for _ in 0..2 {
        let response = client
            .post(server.url("/webhooks/console/status"))
            .json(&status)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        db.storage.status_count("console", "OUT-1").await.unwrap(),
        1
    );
    server.stop().await;
    db.cleanup().await;
}

crate::both_backends!(
    storage_records_each_inbound_message_once,
    storage_keeps_a_message_from_no_phone_number,
    storage_commits_a_consent_change_with_its_event,
);

fn inbound<'a>(
    id: &'a str,
    from: Option<&'a Phone>,
    body: &'a str,
    consent: Option<ConsentChange>,
) -> NewInbound<'a> {
    NewInbound {
        channel: "console",
        provider_message_id: id,
        to: "console",
        from,
        body,
        consent,
        received_at: Timestamp::now(),
    }
}

async fn storage_records_each_inbound_message_once(db: &TestDb) {
    let from = phone("+33612345678");
    let first = db
        .storage
        .receive_inbound(&inbound("A", Some(&from), "9", None))
        .await
        .unwrap();
    assert!(
        matches!(
            first,
            InboundOutcome::Stored {
                consent_changed: None,
                ..
            }
        ),
        "{first:?}"
    );
    let again = db
        .storage
        .receive_inbound(&inbound("A", Some(&from), "9", None))
        .await
        .unwrap();
    assert_eq!(again, InboundOutcome::Duplicate);
    let other_channel = NewInbound {
        channel: "twilio",
        ..inbound("A", Some(&from), "9", None)
    };
    assert!(
        matches!(
            db.storage.receive_inbound(&other_channel).await.unwrap(),
            InboundOutcome::Stored { .. }
        ),
        "ids are per channel"
    );
    let contact = db.storage.contact_by_phone(&from).await.unwrap().unwrap();
    assert_eq!(
        db.storage
            .contact_messages(&contact.id)
            .await
            .unwrap()
            .len(),
        2
    );

    let status = NewStatus {
        channel: "console",
        provider_message_id: "OUT",
        status: "sent",
        error_code: None,
        number_status: None,
        received_at: Timestamp::now(),
    };
    assert!(db.storage.record_status(&status).await.unwrap());
    assert!(
        !db.storage.record_status(&status).await.unwrap(),
        "a status callback retry changes nothing"
    );
    assert!(
        db.storage
            .record_status(&NewStatus {
                status: "delivered",
                ..status.clone()
            })
            .await
            .unwrap()
    );
    assert_eq!(db.storage.status_count("console", "OUT").await.unwrap(), 2);
}

async fn storage_keeps_a_message_from_no_phone_number(db: &TestDb) {
    let outcome = db
        .storage
        .receive_inbound(&inbound("B", None, "hello", Some(ConsentChange::OptedOut)))
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            InboundOutcome::Stored {
                contact_id: None,
                consent_changed: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(db.storage.outbox_after(0, 10).await.unwrap().is_empty());
}

async fn storage_commits_a_consent_change_with_its_event(db: &TestDb) {
    let from = phone("+33612345678");
    let out = db
        .storage
        .receive_inbound(&inbound(
            "C1",
            Some(&from),
            "STOP",
            Some(ConsentChange::OptedOut),
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            InboundOutcome::Stored {
                consent_changed: Some(ConsentChange::OptedOut),
                ..
            }
        ),
        "{out:?}"
    );
    let twice = db
        .storage
        .receive_inbound(&inbound(
            "C2",
            Some(&from),
            "STOP",
            Some(ConsentChange::OptedOut),
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            twice,
            InboundOutcome::Stored {
                consent_changed: None,
                ..
            }
        ),
        "{twice:?}"
    );
    let retry = db
        .storage
        .receive_inbound(&inbound(
            "C1",
            Some(&from),
            "STOP",
            Some(ConsentChange::OptedOut),
        ))
        .await
        .unwrap();
    assert_eq!(retry, InboundOutcome::Duplicate);
    let contact = db.storage.contact_by_phone(&from).await.unwrap().unwrap();
    assert!(contact.opted_out_at.is_some());
    assert_eq!(
        db.storage
            .contact_consents(&contact.id)
            .await
            .unwrap()
            .len(),
        1
    );
    let events = db.storage.outbox_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "contact.opted_out");
    assert_eq!(
        db.storage
            .outbox_after(events[0].seq, 10)
            .await
            .unwrap()
            .len(),
        0
    );
}

/// PostgreSQL: a message from a number whose contact another request creates meanwhile (after
/// this batch looked for it, before it could create it) is stored on that contact, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_a_number_created_meanwhile_joins_that_contact() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let from = phone("+33612345678");
    let mut other = crate::support::HeldTransaction::begin(&db.url).await;
    sqlx::query(
        "INSERT INTO contacts (id, phone, created_at, updated_at) VALUES ('k-other', $1, now(), now())",
    )
    .bind(from.as_e164())
    .execute(&mut *other.tx)
    .await
    .unwrap();

    let storage = db.storage.clone();
    let receiving = tokio::spawn(async move {
        let from = phone("+33612345678");
        storage
            .receive_inbound(&inbound("A", Some(&from), "9", None))
            .await
    });
    // The batch found no contact and waits to create it behind the other request's.
    other
        .wait_until_blocking("the message waits for the other request")
        .await;
    other.tx.commit().await.unwrap();

    let outcome = receiving.await.unwrap().unwrap();
    assert!(
        matches!(outcome, InboundOutcome::Stored { .. }),
        "{outcome:?}"
    );
    let contacts: Vec<String> = sqlx::query_scalar("SELECT id FROM contacts")
        .fetch_all(&other.pool)
        .await
        .unwrap();
    assert_eq!(contacts, ["k-other"]);
    assert_eq!(
        db.storage.contact_messages("k-other").await.unwrap().len(),
        1
    );
    other.pool.close().await;
    db.cleanup().await;
}

/// PostgreSQL: a batch of messages from a known number and a new one locks their contacts in
/// phone order, as intake does: a request that created the new number's contact, and then
/// wants the known one, is not deadlocked by the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_new_number_locks_its_contacts_in_phone_order() {
    use hearback::storage::{InboundPlan, OwnedInbound, QueuedInbound};
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (new_number, known_number) = (phone("+33611111111"), phone("+33622222222"));
    db.storage
        .receive_inbound(&inbound("known-0", Some(&known_number), "hello", None))
        .await
        .unwrap();
    // Another request creates the new number's contact and has not committed yet.
    let mut other = crate::support::HeldTransaction::begin(&db.url).await;
    sqlx::query(
        "INSERT INTO contacts (id, phone, created_at, updated_at) VALUES ('k-other', $1, now(), now())",
    )
    .bind(new_number.as_e164())
    .execute(&mut *other.tx)
    .await
    .unwrap();

    let storage = db.storage.clone();
    let batch = tokio::spawn(async move {
        let queued = |id: &str, from: &Phone| QueuedInbound {
            new: OwnedInbound {
                channel: "console".into(),
                provider_message_id: id.into(),
                to: "console".into(),
                from: Some(from.clone()),
                body: "9".into(),
                consent: None,
                received_at: Timestamp::now(),
            },
            send_max_attempts: 3,
            plan: std::sync::Arc::new(|_: &hearback::storage::InboundContext| {
                InboundPlan::default()
            }),
        };
        let (first, second) = (
            queued("new-1", &phone("+33611111111")),
            queued("known-1", &phone("+33622222222")),
        );
        storage
            .receive_batch(&[&first, &second], None)
            .await
            .map(|applied| applied.outcomes)
    });
    other
        .wait_until_blocking("the batch waits for the other request")
        .await;
    // The batch waits on the new number, the first in phone order: it holds no lock on the
    // known one yet. (Locking the known contact first deadlocked here.)
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *other.tx)
        .await
        .unwrap();
    sqlx::query("SELECT id FROM contacts WHERE phone = $1 FOR NO KEY UPDATE")
        .bind(known_number.as_e164())
        .fetch_one(&mut *other.tx)
        .await
        .expect("the known contact is free");
    other.tx.commit().await.unwrap();

    let outcomes = batch.await.unwrap().unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, InboundOutcome::Stored { .. })),
        "{outcomes:?}"
    );
    assert_eq!(
        db.storage.contact_messages("k-other").await.unwrap().len(),
        1
    );
    other.pool.close().await;
    db.cleanup().await;
}
