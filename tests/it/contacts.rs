//! One customer's card and their erasure, through the real server on both databases; the
//! retention run on a clock the test moves; and, through the real binary, a search of the
//! database files and the logs after an erasure.

use crate::conversations::{config, invite, wait_until};
use crate::startup::{Served, hearback, run_bounded};
use crate::support::{TestDb, TestServer, api_key};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A number and words no other test uses, so that finding them anywhere means they were kept.
const PHONE: &str = "+33698765431";
const PHONE_PATH: &str = "%2B33698765431";
const NATIONAL: &str = "0698765431";
const FIRST_NAME: &str = "Wilhelmina";
const COMMENT: &str = "Xylophonique livraison";

fn invitation(event_id: &str) -> Value {
    json!({
        "event_id": event_id,
        "flow": "delivery",
        "phone": PHONE,
        "locale": "fr-FR",
        "variables": { "first_name": FIRST_NAME, "store": "Lyon 2", "order_date": "12/11" },
    })
}

async fn text_from_customer(client: &Client, base: &str, id: &str, text: &str) {
    let response = client
        .post(format!("{base}/webhooks/console/inbound"))
        .json(&json!({ "id": id, "from": PHONE, "to": "console", "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{text}");
}

/// The console's texts to the customer, whatever their status.
async fn texts_to_customer(client: &Client, base: &str, key: &str) -> Vec<Value> {
    let body: Value = client
        .get(format!("{base}/api/v1/console/messages?to={PHONE_PATH}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["messages"].as_array().cloned().unwrap_or_default()
}

async fn wait_for_texts(client: &Client, base: &str, key: &str, count: usize) {
    for _ in 0..500 {
        let texts = texts_to_customer(client, base, key).await;
        if texts.len() >= count && texts.iter().all(|m| m["status"] == "sent") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {count} texts to the customer");
}

/// The customer answers the delivery survey: 9, a comment, yes to publishing it. Returns the
/// invitation as created.
async fn whole_survey(client: &Client, base: &str, key: &str) -> Value {
    let response = client
        .post(format!("{base}/api/v1/invitations"))
        .bearer_auth(key)
        .json(&invitation("order-card"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let created: Value = response.json().await.unwrap();
    wait_for_texts(client, base, key, 1).await;
    text_from_customer(client, base, "in-1", "9").await;
    wait_for_texts(client, base, key, 2).await;
    text_from_customer(client, base, "in-2", COMMENT).await;
    wait_for_texts(client, base, key, 3).await;
    text_from_customer(client, base, "in-3", "oui").await;
    wait_for_texts(client, base, key, 4).await;
    created
}

async fn console_server(db: &TestDb) -> (TestServer, Client, String) {
    let server = TestServer::start(
        config(db, "[channels.console]\nprovider = \"console\"\n"),
        db.storage.clone(),
    )
    .await;
    let key = api_key(&db.storage, "crm").await;
    (server, Client::new(), key)
}

async fn card(client: &Client, server: &TestServer, key: &str, phone: &str) -> (StatusCode, Value) {
    let response = client
        .get(server.url(&format!("/api/v1/contacts/{phone}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn erase(
    client: &Client,
    server: &TestServer,
    key: &str,
    phone: &str,
) -> (StatusCode, Value) {
    let response = client
        .delete(server.url(&format!("/api/v1/contacts/{phone}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Every row of every table of the test's database, each as one line of text.
async fn every_row(db: &TestDb) -> String {
    let mut out = String::new();
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for table in tables {
            let columns: Vec<String> =
                sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let row = columns
                .iter()
                .map(|c| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {row} FROM \"{table}\""))
                .fetch_all(&pool)
                .await
                .unwrap();
            for row in rows {
                out.push_str(&format!("{table}: {row}\n"));
            }
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for table in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            for row in rows {
                out.push_str(&format!("{table}: {row}\n"));
            }
        }
        pool.close().await;
    }
    out
}

/// The traces of the customer that must be gone: the number in its forms, their name, their
/// words.
fn traces_in(text: &str) -> Vec<&'static str> {
    [
        PHONE,
        &PHONE[1..],
        NATIONAL,
        "698765431",
        FIRST_NAME,
        COMMENT,
    ]
    .into_iter()
    .filter(|trace| text.contains(trace))
    .collect()
}

async fn the_card_shows_the_whole_conversation(db: &TestDb) {
    let (server, client, key) = console_server(db).await;
    let created = whole_survey(&client, &server.base, &key).await;

    let (status, body) = card(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["contact"]["phone"], PHONE);
    assert_eq!(body["contact"]["opted_out"], false);
    assert_eq!(
        body["invitations"][0]["variables"]["first_name"],
        FIRST_NAME
    );
    assert_eq!(body["invitations"][0]["event_id"], "order-card");
    let conversation = &body["conversations"][0];
    assert_eq!(conversation["id"], created["conversation_id"]);
    assert_eq!(conversation["status"], "completed");
    let texts: Vec<(&str, &str)> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    let inbound: Vec<&str> = texts
        .iter()
        .filter(|(d, _)| *d == "inbound")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(inbound, ["9", COMMENT, "oui"], "{texts:?}");
    assert_eq!(
        texts.iter().filter(|(d, _)| *d == "outbound").count(),
        4,
        "three questions and the closing text: {texts:?}"
    );
    assert!(texts[0].1.contains(FIRST_NAME), "{texts:?}");
    let answers = conversation["answers"].as_array().unwrap();
    assert_eq!(answers[0]["kind"], "nps");
    assert_eq!(answers[0]["score"], 9);
    assert!(answers.iter().any(|a| a["text"] == COMMENT), "{answers:?}");

    // The same number written as the customer's country writes it is not understood without a
    // default region; neither is something that is no number. Neither is echoed back.
    for bad in ["not-a-number", NATIONAL] {
        let (status, body) = card(&client, &server, &key, bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert!(
            body["error"]["details"]["fields"]["phone"].is_string(),
            "{body}"
        );
    }
    let (status, body) = card(&client, &server, &key, "%2B33698765432").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = erase(&client, &server, &key, "not-a-number").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    server.stop().await;
}

async fn erasure_removes_the_number_and_texts_everywhere_and_keeps_the_scores(db: &TestDb) {
    let (server, client, key) = console_server(db).await;
    let created = whole_survey(&client, &server.base, &key).await;
    // The request's SHA-256 (the same event twice is the same invitation): hashing every mobile
    // number with the event's other fields, which stay, would find the number again.
    let request: hearback::intake::CreateInvitationRequest =
        serde_json::from_value(invitation("order-card")).unwrap();
    let request_hash = hex::encode(hearback::intake::payload_hash(&request));
    assert!(
        every_row(db).await.to_lowercase().contains(&request_hash),
        "the request's hash is stored before the erasure"
    );
    let before = traces_in(&every_row(db).await);
    assert!(
        [PHONE, FIRST_NAME, COMMENT]
            .iter()
            .all(|t| before.contains(t)),
        "the survey is stored before the erasure: {before:?}"
    );
    let (_, card_before) = card(&client, &server, &key, PHONE_PATH).await;
    let contact_id = card_before["contact"]["id"].as_str().unwrap().to_string();

    let (status, body) = erase(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "contact_id": contact_id, "blocked": false }));

    let after = every_row(db).await;
    assert_eq!(
        traces_in(&after),
        Vec::<&str>::new(),
        "traces left:\n{}",
        after
            .lines()
            .filter(|l| !traces_in(l).is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The score stays, without identity, for the aggregates.
    assert_eq!(
        after
            .lines()
            .filter(|l| l.starts_with("answers: ") && l.contains("nps") && l.contains(",9,"))
            .count(),
        1,
        "{after}"
    );

    assert!(
        !after.to_lowercase().contains(&request_hash),
        "the request's hash is gone"
    );
    // The same event sent again is still that invitation, not a conflict.
    let (status, again) = invite(&client, &server, &key, &invitation("order-card")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["id"], created["id"], "{again}");

    // One event about the contact is left: its erasure, naming its id only.
    let events = db.storage.outbox_after(0, 500).await.unwrap();
    let mine: Vec<_> = events
        .iter()
        .filter(|e| e.contact_id.as_deref() == Some(&contact_id))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].event_type, "contact.erased");
    assert_eq!(
        mine[0].payload.0,
        json!({ "contact": { "id": contact_id } })
    );
    let audit = db.storage.audit_entries("contact", 10).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].action, "contact.erased");
    assert_eq!(audit[0].target_id.as_deref(), Some(contact_id.as_str()));
    assert!(audit[0].actor.starts_with("api_key:"), "{:?}", audit[0]);
    assert_eq!(audit[0].details, json!({}));

    let (status, body) = erase(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = card(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The customer had not opted out: a new event surveys them again, as a new contact.
    let (status, again) = invite(&client, &server, &key, &invitation("order-after")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["status"], "scheduled", "{again}");
    let (_, card_after) = card(&client, &server, &key, PHONE_PATH).await;
    assert_ne!(card_after["contact"]["id"], json!(contact_id));

    // Erased while that survey is open: it ends, and its reminder and expiry are dropped.
    let conversation = again["conversation_id"].as_str().unwrap().to_string();
    let jobs_of = |rows: &str| {
        rows.lines()
            .filter(|l| l.starts_with("jobs: ") && l.contains(conversation.as_str()))
            .count()
    };
    assert_eq!(
        jobs_of(&every_row(db).await),
        2,
        "its reminder and expiry are queued"
    );
    let (status, _) = erase(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK);
    let rows = every_row(db).await;
    assert_eq!(jobs_of(&rows), 0, "{rows}");
    assert_eq!(
        db.storage
            .conversation_status(&conversation)
            .await
            .unwrap()
            .map(|(status, _)| status)
            .as_deref(),
        Some("expired")
    );
    assert_eq!(traces_in(&rows), Vec::<&str>::new());
    server.stop().await;
}

async fn an_erased_number_that_had_opted_out_stays_blocked(db: &TestDb) {
    let (server, client, key) = console_server(db).await;
    text_from_customer(&client, &server.base, "stop-1", "STOP").await;
    wait_for_texts(&client, &server.base, &key, 1).await;

    let (status, body) = erase(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["blocked"], true);
    assert_eq!(traces_in(&every_row(db).await), Vec::<&str>::new());

    // An integration sends the number again: declined, as for any opted-out number.
    let (status, declined) = invite(&client, &server, &key, &invitation("order-2")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{declined}");
    assert_eq!(declined["status"], "declined", "{declined}");
    assert_eq!(declined["status_reason"], "opted_out", "{declined}");
    let (_, body) = card(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(body["contact"]["opted_out"], true, "{body}");
    assert_eq!(body["consents"][0]["change"], "opted_out");
    assert_eq!(body["consents"][0]["source"], "blocked_number");
    assert_eq!(body["consents"].as_array().unwrap().len(), 1, "{body}");

    // Erased again, then the customer writes first: still opted out, no survey, no second
    // confirmation for a STOP.
    let (status, body) = erase(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["blocked"], true);
    text_from_customer(&client, &server.base, "text-1", "bonjour").await;
    text_from_customer(&client, &server.base, "stop-2", "STOP").await;
    let (_, body) = card(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(body["contact"]["opted_out"], true, "{body}");
    assert_eq!(
        body["other_messages"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let texts = texts_to_customer(&client, &server.base, &key).await;
    assert!(
        texts.is_empty(),
        "the erasures emptied the old confirmation, and nothing new was sent: {texts:?}"
    );
    let (status, declined) = invite(&client, &server, &key, &invitation("order-3")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(declined["status_reason"], "opted_out", "{declined}");

    // START lifts the block as it lifts any opt-out; erased then, the number is free.
    text_from_customer(&client, &server.base, "start-1", "START").await;
    let (status, body) = erase(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["blocked"], false, "{body}");
    let (_, accepted) = invite(&client, &server, &key, &invitation("order-4")).await;
    assert_eq!(accepted["status"], "scheduled", "{accepted}");
    server.stop().await;
}

/// With `retention_days = 30`, the daily run a month later empties the texts and anonymises the
/// customer, and keeps the score.
async fn retention_removes_old_texts_and_idle_numbers(db: &TestDb) {
    let clock = hearback::time::Clock::system();
    let mut config = config(db, "[channels.console]\nprovider = \"console\"\n");
    config.privacy.retention_days = Some(30);
    let server = TestServer::start_with_clock(config, db.storage.clone(), clock.clone()).await;
    let client = Client::new();
    let key = api_key(&db.storage, "crm").await;
    whole_survey(&client, &server.base, &key).await;
    // The first run, at start-up, found nothing old enough.
    let before = traces_in(&every_row(db).await);
    assert!(
        [PHONE, FIRST_NAME, COMMENT]
            .iter()
            .all(|t| before.contains(t)),
        "{before:?}"
    );

    clock.advance(Duration::from_secs(31 * 24 * 3600));
    wait_until("the retention run anonymised the customer", || async {
        card(&client, &server, &key, PHONE_PATH).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    let after = every_row(db).await;
    assert_eq!(traces_in(&after), Vec::<&str>::new(), "{after}");
    assert_eq!(
        after
            .lines()
            .filter(|l| l.starts_with("answers: ") && l.contains("nps") && l.contains(",9,"))
            .count(),
        1,
        "the score stays: {after}"
    );
    let audit = db.storage.audit_entries("contact", 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "system");
    server.stop().await;
}

/// A detractor's case: erasure closes it, empties its history's details and drops its jobs
/// (found by their payload), and the customer's words in the case are gone.
async fn erasure_closes_the_customer_s_case_and_drops_its_jobs(db: &TestDb) {
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts.yaml");
    let config = db.config_from_toml(&format!(
        "[flows]\ndir = \"{flows}\"\nalerts = \"{rules}\"\n\n\
         [jobs]\npoll_interval_ms = 20\nbackoff_base_ms = 20\n\n\
         [dispatch]\nimmediate = true\nfrequency_cap_days = 0\n\n\
         [channels.console]\nprovider = \"console\"\n"
    ));
    let server = TestServer::start(config, db.storage.clone()).await;
    let client = Client::new();
    let key = api_key(&db.storage, "crm").await;
    let (status, _) = invite(&client, &server, &key, &invitation("order-case")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for_texts(&client, &server.base, &key, 1).await;
    text_from_customer(&client, &server.base, "in-1", &format!("2 {COMMENT}")).await;
    let mut case_id = String::new();
    for _ in 0..500 {
        let (_, body) = card(&client, &server, &key, PHONE_PATH).await;
        if let Some(id) = body["cases"][0]["id"].as_str() {
            case_id = id.to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!case_id.is_empty(), "the detractor's case opens");
    let jobs_of_case = |rows: &str| {
        rows.lines()
            .filter(|l| l.starts_with("jobs: ") && l.contains(case_id.as_str()))
            .count()
    };
    assert!(jobs_of_case(&every_row(db).await) > 0, "its SLA is queued");

    let (status, _) = erase(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK);
    let rows = every_row(db).await;
    assert_eq!(jobs_of_case(&rows), 0, "{rows}");
    assert_eq!(traces_in(&rows), Vec::<&str>::new(), "{rows}");
    let case = rows
        .lines()
        .find(|l| l.starts_with("cases: ") && l.contains(case_id.as_str()))
        .unwrap();
    assert!(
        case.contains("closed") && case.contains("no_action_needed"),
        "{case}"
    );
    server.stop().await;
}

/// A customer still active (they wrote again since) is not erased by the retention run, but what
/// they wrote a month ago goes from every table: their texts, their answers' words, and the
/// events that quoted them.
async fn retention_empties_what_an_active_customer_wrote_long_ago(db: &TestDb) {
    let (server, client, key) = console_server(db).await;
    whole_survey(&client, &server.base, &key).await;
    let now = hearback::time::Timestamp::now();
    db.storage.fan_out_events(1_000, now).await.unwrap();
    assert!(every_row(db).await.contains(COMMENT));
    // Retention as if all that was long ago; the customer writes again after it.
    let retention_edge = now + Duration::from_millis(500);
    tokio::time::sleep(Duration::from_millis(700)).await;
    text_from_customer(&client, &server.base, "in-later", "bonjour").await;
    db.storage
        .apply_retention(retention_edge, hearback::time::Timestamp::now())
        .await
        .unwrap();
    let rows = every_row(db).await;
    assert!(
        !rows.contains(COMMENT),
        "{}",
        rows.lines()
            .filter(|l| l.contains(COMMENT))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (status, _) = card(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK, "still a customer");
    server.stop().await;
}

/// The retention run finds a customer idle; before it takes their lock, the customer writes
/// (a transaction holding their row adds a text). The run asks again under the lock and keeps
/// them.
#[tokio::test]
async fn a_customer_who_writes_as_the_retention_run_reaches_them_is_kept() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let storage = db
        .storage
        .clone()
        .with_privacy_key(hearback::privacy::HashKey::new(vec![7u8; 32]));
    let phone = hearback::phone::Phone::parse(PHONE, None).unwrap();
    let long_ago = hearback::time::Timestamp::now();
    storage
        .receive_inbound(&hearback::storage::NewInbound {
            channel: "console",
            provider_message_id: "long-ago",
            to: "console",
            from: Some(&phone),
            body: "bonjour",
            consent: None,
            received_at: long_ago,
        })
        .await
        .unwrap();
    let before = long_ago + Duration::from_secs(1);
    let mut writes = crate::support::HeldTransaction::begin(&db.url).await;
    sqlx::query("SELECT id FROM contacts WHERE phone = $1 FOR UPDATE")
        .bind(PHONE)
        .execute(&mut *writes.tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO messages (id, contact_id, direction, channel, body, status, created_at, updated_at) \
         SELECT 'just-now', id, 'inbound', 'console', 'encore moi', 'received', $2, $2 \
         FROM contacts WHERE phone = $1",
    )
    .bind(PHONE)
    .bind(before + Duration::from_secs(1))
    .execute(&mut *writes.tx)
    .await
    .unwrap();
    let running = storage.clone();
    let run = tokio::spawn(async move { running.apply_retention(before, before).await });
    writes
        .wait_until_blocking("the run waits for the customer's row")
        .await;
    writes.tx.commit().await.unwrap();
    let done = run.await.unwrap().unwrap();
    assert_eq!(done.contacts_anonymised, 0);
    assert!(
        storage.contact_by_phone(&phone).await.unwrap().is_some(),
        "the customer is kept"
    );
    writes.pool.close().await;
    db.cleanup().await;
}

/// A retention run that fails (here its database lost a table) has already queued tomorrow's:
/// one bad day does not end the daily runs.
async fn a_failed_retention_run_leaves_tomorrow_s_run_queued(db: &TestDb) {
    use hearback::jobs::JobHandler;
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query("ALTER TABLE answers RENAME TO answers_gone")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query("ALTER TABLE answers RENAME TO answers_gone")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let clock = hearback::time::Clock::system();
    let run = hearback::jobs::retention::ApplyRetention {
        storage: db.storage.clone(),
        retention: Duration::from_secs(30 * 86_400),
        clock: clock.clone(),
    };
    let job = hearback::storage::ClaimedJob {
        id: 0,
        kind: hearback::jobs::retention::ApplyRetention::KIND.into(),
        payload: json!({}),
        attempt: 5,
        max_attempts: 5,
    };
    let outcome = run.run(job).await;
    assert!(outcome.is_err(), "the run fails: {outcome:?}");
    let tomorrow = (clock.now().as_datetime() + chrono::Duration::days(1)).format("%Y-%m-%d");
    let next = db
        .storage
        .job_by_key(&format!("privacy.retention:{tomorrow}"))
        .await
        .unwrap();
    assert!(next.is_some(), "tomorrow's run is queued");
}

crate::both_backends!(
    retention_empties_what_an_active_customer_wrote_long_ago,
    a_failed_retention_run_leaves_tomorrow_s_run_queued,
    erasure_closes_the_customer_s_case_and_drops_its_jobs,
    the_card_shows_the_whole_conversation,
    erasure_removes_the_number_and_texts_everywhere_and_keeps_the_scores,
    an_erased_number_that_had_opted_out_stays_blocked,
    retention_removes_old_texts_and_idle_numbers,
);

/// The "done when": the real binary on a SQLite file holds a conversation with a
/// distinctive number and words, erases the customer and stops; then neither the database
/// file, nor its `-wal` and `-shm`, nor anything the server logged holds the number (in any
/// form) or the words.
#[tokio::test]
async fn after_erasure_no_file_or_log_line_holds_the_number_or_the_texts() {
    let dir = tempfile::tempdir().unwrap();
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    std::fs::write(
        dir.path().join("hearback.toml"),
        format!(
            "[flows]\ndir = \"{flows}\"\n\n[jobs]\npoll_interval_ms = 20\n\n\
             [dispatch]\nimmediate = true\n\n[log]\nlevel = \"debug\"\n\n\
             [channels.console]\nprovider = \"console\"\n"
        ),
    )
    .unwrap();
    let created = run_bounded(hearback(dir.path()).args(["api-keys", "create", "--name", "crm"]));
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let mut command = hearback(dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HEARBACK_LOG__LEVEL", "debug");
    let served = Served::start(command);
    let client = Client::new();
    whole_survey(&client, &served.base, &key).await;
    let response = client
        .delete(format!("{}/api/v1/contacts/{PHONE_PATH}", served.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, log) = served.terminate_with_whole_log();
    assert!(
        dir.path().join("hearback.key").exists(),
        "with no hash_key configured, the key was generated beside the database"
    );
    assert!(status.success(), "{log}");
    assert!(log.contains("contact erased"), "{log}");
    assert_eq!(traces_in(&log), Vec::<&str>::new(), "in the log:\n{log}");

    let mut searched = 0;
    for name in ["hearback.db", "hearback.db-wal", "hearback.db-shm"] {
        let Ok(bytes) = std::fs::read(dir.path().join(name)) else {
            continue;
        };
        searched += 1;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(traces_in(&text), Vec::<&str>::new(), "in {name}");
    }
    assert!(searched >= 1, "the database file exists");
}

/// The same search over a `pg_dump` of the test's schema, when pg_dump is installed.
#[tokio::test]
async fn after_erasure_a_postgres_dump_holds_neither_the_number_nor_the_texts() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Ok(dump_version) = std::process::Command::new("pg_dump")
        .arg("--version")
        .output()
    else {
        eprintln!("pg_dump is not installed: the PostgreSQL dump was not searched");
        db.cleanup().await;
        return;
    };
    assert!(dump_version.status.success());
    let (server, client, key) = console_server(&db).await;
    whole_survey(&client, &server.base, &key).await;
    let (status, _) = erase(&client, &server, &key, PHONE_PATH).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;

    let base = crate::support::postgres_url().unwrap();
    let schema = db.url.rsplit("search_path]=").next().unwrap().to_string();
    let dump = std::process::Command::new("pg_dump")
        .args(["--dbname", &base, "--schema", &schema, "--data-only"])
        .output()
        .unwrap();
    assert!(dump.status.success(), "{dump:?}");
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("contact.erased"), "the dump holds the data");
    assert_eq!(traces_in(&text), Vec::<&str>::new());
    db.cleanup().await;
}
