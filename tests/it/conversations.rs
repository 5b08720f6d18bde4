//! Whole conversations through the real server: an invitation queues the first question, the
//! job workers send it, the customer's replies move the survey, every event lands in the outbox.

use crate::support::{TestDb, TestServer, api_key, twilio_signature};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use base64::Engine;
use hearback::config::Config;
use hearback::phone::Phone;
use hmac::{Hmac, Mac};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const CUSTOMER: &str = "+33612345678";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "12345";
const TWILIO_NUMBER: &str = "+33757000000";

/// A configuration on the test database with the shipped flows, quick job polling, surveys
/// sent at once whatever the hour (`dispatch.immediate`), no frequency cap (tests survey one
/// customer again and again; the cap has its own test), and `channels` (TOML) as its channels.
pub(crate) fn config(db: &TestDb, channels: &str) -> Config {
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    db.config_from_toml(&format!(
        "[flows]\ndir = \"{flows}\"\n\n[jobs]\npoll_interval_ms = 20\nbackoff_base_ms = 20\n\n\
         [dispatch]\nimmediate = true\nfrequency_cap_days = 0\n\n{channels}"
    ))
}

pub(crate) fn delivery_invitation(event_id: &str) -> Value {
    json!({
        "event_id": event_id,
        "flow": "delivery",
        "phone": CUSTOMER,
        "locale": "fr-FR",
        "variables": { "first_name": "Ana", "store": "Lyon 2", "order_date": "12/11" },
    })
}

pub(crate) async fn invite(
    client: &Client,
    server: &TestServer,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = client
        .post(server.url("/api/v1/invitations"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// GETs `url` with the API key; returns the JSON answer.
pub(crate) async fn get_json(client: &Client, url: String, key: &str) -> Value {
    client
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn console_messages(
    client: &Client,
    server: &TestServer,
    key: &str,
) -> Vec<Value> {
    let body: Value = client
        .get(server.url(&format!(
            "/api/v1/console/messages?to=%2B{}",
            &CUSTOMER[1..]
        )))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut messages = body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone();
    messages.reverse();
    messages
}

/// Waits until the console has sent `count` messages to the customer; returns them, oldest first.
pub(crate) async fn sent_to_customer(
    client: &Client,
    server: &TestServer,
    key: &str,
    count: usize,
) -> Vec<Value> {
    for _ in 0..500 {
        let messages = console_messages(client, server, key).await;
        if messages.len() >= count && messages.iter().all(|m| m["status"] == "sent") {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "expected {count} sent messages, have {:?}",
        console_messages(client, server, key).await
    );
}

/// The customer answers the quick survey of `invitation` to the end (score, comment, consent;
/// message ids from `prefix`); returns once its conversation is completed.
pub(crate) async fn answer_to_the_end(
    db: &TestDb,
    (client, server): (&Client, &TestServer),
    invitation: &Value,
    prefix: &str,
) {
    for (n, text) in ["8", "rien a dire", "oui"].into_iter().enumerate() {
        reply(client, server, &format!("{prefix}-{n}"), text).await;
    }
    let conversation = invitation["conversation_id"].as_str().unwrap().to_string();
    wait_until("the survey is complete", || async {
        db.storage
            .conversation_status(&conversation)
            .await
            .unwrap()
            .is_some_and(|(status, _)| status == "completed")
    })
    .await;
}

/// The status of a survey (conversation) that exists: open, completed or expired.
pub(crate) async fn survey_status(db: &TestDb, conversation: &str) -> String {
    let (status, _) = db
        .storage
        .conversation_status(conversation)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no conversation {conversation}"));
    status
}

pub(crate) async fn reply(client: &Client, server: &TestServer, id: &str, text: &str) {
    let response = client
        .post(server.url("/webhooks/console/inbound"))
        .json(&json!({ "id": id, "from": CUSTOMER, "to": "console", "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{text}");
}

async fn event_types(db: &TestDb) -> Vec<String> {
    db.storage
        .outbox_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

/// The server with one console channel, a client, and an integration's API key.
async fn console_server(db: &TestDb) -> (TestServer, Client, String) {
    let server = TestServer::start(
        config(db, "[channels.console]\nprovider = \"console\"\n"),
        db.storage.clone(),
    )
    .await;
    let key = api_key(&db.storage, "crm").await;
    (server, Client::new(), key)
}

async fn a_survey_runs_from_invitation_to_completion(db: &TestDb) {
    let (server, client, key) = console_server(db).await;

    let (status, invitation) =
        invite(&client, &server, &key, &delivery_invitation("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    assert_eq!(invitation["status"], "scheduled");
    assert_eq!(invitation["channel"], "console");
    let first = sent_to_customer(&client, &server, &key, 1).await;
    assert!(
        first[0]["body"]
            .as_str()
            .unwrap()
            .starts_with("Bonjour Ana, suite à votre livraison Lyon 2"),
        "{first:?}"
    );

    reply(&client, &server, "in-1", "3 livreur en retard").await;
    // The provider retries: nothing changes.
    reply(&client, &server, "in-1", "3 livreur en retard").await;
    let after_score = sent_to_customer(&client, &server, &key, 2).await;
    assert_eq!(
        after_score.len(),
        2,
        "one question per reply: {after_score:?}"
    );
    let mut count = 2;
    for (n, text) in ["oui", "non", "oui", "non"].into_iter().enumerate() {
        let conversation = invitation["conversation_id"].as_str().unwrap();
        let status = survey_status(db, conversation).await;
        if status != "open" {
            break;
        }
        reply(&client, &server, &format!("in-{}", n + 2), text).await;
        count += 1;
        sent_to_customer(&client, &server, &key, count).await;
    }
    let conversation = invitation["conversation_id"].as_str().unwrap();
    let status = survey_status(db, conversation).await;
    assert_eq!(status, "completed");
    let answers = db.storage.conversation_answers(conversation).await.unwrap();
    assert_eq!(answers[0].question_id, "score");
    assert_eq!(answers[0].score, Some(3));
    assert_eq!(
        answers[1].text.as_deref(),
        Some("livreur en retard"),
        "the comment answered the open question: {answers:?}"
    );

    let types = event_types(db).await;
    assert_eq!(
        types.first().map(String::as_str),
        Some("invitation.sent"),
        "{types:?}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("response.completed"),
        "{types:?}"
    );
    let answered = types.iter().filter(|t| *t == "response.answered").count();
    assert_eq!(answered, answers.len(), "{types:?}");

    let fetched: Value = client
        .get(server.url(&format!(
            "/api/v1/invitations/{}",
            invitation["id"].as_str().unwrap()
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["status"], "sent");
    server.stop().await;
}

async fn the_same_event_twice_is_one_invitation_and_one_sms(db: &TestDb) {
    let (server, client, key) = console_server(db).await;
    let body = delivery_invitation("order-7");
    // The same event five times at once (a client retrying on a timeout): one invitation.
    let at_once =
        futures::future::join_all((0..5).map(|_| invite(&client, &server, &key, &body))).await;
    let first = at_once[0].1.clone();
    for (status, again) in &at_once {
        assert_eq!(*status, StatusCode::ACCEPTED, "{again}");
        assert_eq!(again["id"], first["id"]);
    }
    let (status, again) = invite(&client, &server, &key, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["id"], first["id"]);

    let mut changed = body.clone();
    changed["variables"]["store"] = json!("Paris 11");
    let (status, error) = invite(&client, &server, &key, &changed).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "conflict");

    // Another integration may use the same event id for its own event.
    let other = api_key(&db.storage, "erp").await;
    let (status, theirs) = invite(&client, &server, &other, &changed).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        theirs["status"], "declined",
        "one open conversation per number and sender"
    );
    assert_eq!(theirs["status_reason"], "open_conversation");

    sent_to_customer(&client, &server, &key, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(console_messages(&client, &server, &key).await.len(), 1);
    server.stop().await;
}

async fn an_invalid_invitation_gets_a_reason_per_field_and_stores_nothing(db: &TestDb) {
    let (server, client, key) = console_server(db).await;
    let (status, error) = invite(
        &client,
        &server,
        &key,
        &json!({
            "event_id": "",
            "flow": "nope",
            "phone": "12",
            "variables": { "first_name": ["a"] },
            "channel": "ghost",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let fields = error["error"]["details"]["fields"].as_object().unwrap();
    for field in ["event_id", "flow", "phone", "variables.first_name"] {
        assert!(fields.contains_key(field), "{field}: {error}");
    }
    let mut missing = delivery_invitation("order-9");
    missing["variables"]
        .as_object_mut()
        .unwrap()
        .remove("store");
    missing["channel"] = json!("ghost");
    let (status, error) = invite(&client, &server, &key, &missing).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = error["error"]["details"]["fields"].as_object().unwrap();
    assert!(
        fields.contains_key("variables.store") && fields.contains_key("channel"),
        "{error}"
    );
    let (status, _) = invite(&client, &server, &key, &json!({ "event_id": "x" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    assert!(
        db.storage
            .contact_by_phone(&Phone::parse(CUSTOMER, None).unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(event_types(db).await.is_empty());
    server.stop().await;
}

async fn stop_ends_the_survey_and_nothing_is_sent_to_the_number_again(db: &TestDb) {
    let (server, client, key) = console_server(db).await;
    let (_, invitation) = invite(&client, &server, &key, &delivery_invitation("order-2")).await;
    sent_to_customer(&client, &server, &key, 1).await;
    reply(&client, &server, "in-1", "STOP").await;
    let messages = sent_to_customer(&client, &server, &key, 2).await;
    assert_eq!(messages[1]["purpose"], "opt_out_confirmation");
    let conversation = invitation["conversation_id"].as_str().unwrap();
    let status = survey_status(db, conversation).await;
    assert_eq!(
        status, "expired",
        "STOP closes the survey; its answers stay"
    );

    reply(&client, &server, "in-2", "AIDE").await;
    reply(&client, &server, "in-3", "9").await;
    reply(&client, &server, "in-4", "STOP").await;
    let (status, declined) = invite(&client, &server, &key, &delivery_invitation("order-3")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["status_reason"], "opted_out");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        console_messages(&client, &server, &key).await.len(),
        2,
        "the question and the one confirmation"
    );
    let types = event_types(db).await;
    assert_eq!(
        types,
        ["invitation.sent", "contact.opted_out", "response.expired"],
        "{types:?}"
    );
    server.stop().await;
}

/// An answer to a customer is handed to the texts lane as the customer's text commits: it does
/// not wait for the lane's next look for due jobs, an hour away here.
async fn an_answer_goes_out_without_waiting_for_the_texts_lanes_next_look(db: &TestDb) {
    let mut config = config(db, "[channels.console]\nprovider = \"console\"\n");
    config.jobs.poll_interval_ms = 3_600_000;
    let server = TestServer::start(config, db.storage.clone()).await;
    let key = api_key(&db.storage, "crm").await;
    let client = Client::new();
    // The lane has looked once, at start, and found nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;

    reply(&client, &server, "in-1", "AIDE").await;
    let messages = sent_to_customer(&client, &server, &key, 1).await;
    assert_eq!(messages[0]["purpose"], "help");
    server.stop().await;
}

/// PostgreSQL (several instances run on it only): two instances, and the one the customer writes
/// to does not hold the channel. Once it has found that out, it leaves its answers to the claims,
/// where the holder takes them, instead of taking them only to put them back for a second. Its
/// own texts lane looks for due jobs once an hour, so only the holder can have sent the second
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_through_a_channel_another_instance_holds_is_left_to_that_instance() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    answers_through_a_channel_held_elsewhere(&db).await;
    db.cleanup().await;
}

async fn answers_through_a_channel_held_elsewhere(db: &TestDb) {
    let (holder, client, key) = console_server(db).await;
    // The holder sends the first question, and so takes the channel's lease, before the other
    // instance starts: otherwise the other's first look for due jobs could take that question
    // and the channel with it.
    invite(&client, &holder, &key, &delivery_invitation("order-h")).await;
    sent_to_customer(&client, &holder, &key, 1).await;
    let mut config = config(db, "[channels.console]\nprovider = \"console\"\n");
    config.jobs.poll_interval_ms = 3_600_000;
    let other = TestServer::start(config, db.second_pool().await).await;

    // The first answer is handed to the other instance's lane, which finds the channel held and
    // puts it back; the holder sends it.
    reply(&client, &other, "in-1", "9").await;
    let messages = sent_to_customer(&client, &holder, &key, 2).await;
    let job = |message: &Value| {
        let key = format!("sms.send:{}", message["id"].as_str().unwrap());
        async move { db.storage.job_by_key(&key).await.unwrap().unwrap() }
    };
    assert_eq!(
        job(&messages[1]).await.last_error.as_deref(),
        Some("another instance is sending through this channel")
    );
    // The next one is not handed over at all.
    reply(&client, &other, "in-2", "Livreur tres aimable").await;
    let messages = sent_to_customer(&client, &holder, &key, 3).await;
    assert_eq!(job(&messages[2]).await.last_error, None);
    other.stop().await;
    holder.stop().await;
}

async fn help_is_answered_and_the_survey_waits(db: &TestDb) {
    let (server, client, key) = console_server(db).await;
    let (_, invitation) = invite(&client, &server, &key, &delivery_invitation("order-4")).await;
    sent_to_customer(&client, &server, &key, 1).await;
    reply(&client, &server, "in-1", "AIDE").await;
    let messages = sent_to_customer(&client, &server, &key, 2).await;
    assert_eq!(messages[1]["purpose"], "help");
    reply(&client, &server, "in-2", "9").await;
    sent_to_customer(&client, &server, &key, 3).await;
    let answers = db
        .storage
        .conversation_answers(invitation["conversation_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(answers[0].score, Some(9));
    server.stop().await;
}

crate::both_backends!(
    a_survey_runs_from_invitation_to_completion,
    the_same_event_twice_is_one_invitation_and_one_sms,
    an_invalid_invitation_gets_a_reason_per_field_and_stores_nothing,
    stop_ends_the_survey_and_nothing_is_sent_to_the_number_again,
    help_is_answered_and_the_survey_waits,
    an_answer_goes_out_without_waiting_for_the_texts_lanes_next_look,
    a_conversation_runs_through_twilio,
    an_invalid_number_is_flagged_and_its_invitation_fails,
    a_number_opted_out_at_the_carrier_is_opted_out_here_too,
    an_outage_moves_the_message_to_the_fallback_channel,
    an_unknown_send_that_the_provider_has_is_recorded_not_sent_again,
    an_unknown_send_that_the_provider_never_got_is_sent_once,
    an_unknown_send_the_provider_cannot_tell_about_is_reported_not_resent,
    a_text_whose_worker_died_on_its_last_attempt_fails_and_is_reported,
    a_text_left_sending_on_its_last_attempt_is_reconciled_then_fails,
    a_text_left_sending_on_its_last_attempt_that_the_provider_cannot_be_asked_about_is_unknown,
    a_failure_recorded_late_leaves_a_text_recorded_sent_as_it_is,
    a_message_queued_before_an_opt_out_is_never_sent,
    sixty_queued_surveys_go_out_in_batches_each_once_but_to_an_opted_out_number,
    a_status_that_arrives_before_the_send_is_applied_with_it,
    a_batch_of_sends_is_recorded_as_each_send_would_be,
    one_instance_at_a_time_holds_a_channel,
    a_long_sms_in_parts_is_reassembled_before_it_is_read,
    two_messages_from_one_number_on_two_instances_are_applied_one_after_the_other,
    a_message_that_fails_does_not_fail_the_others_committed_with_it,
    a_long_sms_whose_parts_stop_coming_is_kept_as_it_is,
    an_unanswered_conversation_expires_and_the_number_can_be_surveyed_again,
    a_batch_applies_its_messages_exactly_as_one_by_one,
    an_event_on_saturday_night_in_paris_is_texted_on_monday_morning,
    a_survey_planned_for_later_holds_its_channel_but_no_conversation,
    an_invitation_opens_once_and_never_for_an_erased_opted_out_or_unknown_flow,
    a_first_message_due_outside_the_window_waits_for_it,
    a_silent_customer_is_reminded_once_then_the_conversation_expires,
    a_first_question_that_goes_out_late_moves_its_reminder_and_expiry_with_it,
    a_survey_whose_opening_runs_out_of_attempts_fails_and_is_reported,
    a_text_queued_for_a_customer_erased_meanwhile_is_never_sent,
    a_customer_surveyed_recently_is_not_surveyed_again,
    a_held_reminder_is_not_sent_once_the_customer_has_answered,
    a_held_reminder_is_not_sent_once_the_survey_has_closed,
);

/// One form as posted to the stand-in.
type Form = Vec<(String, String)>;

/// What the Twilio stand-in received, and the error it gives instead of accepting a message
/// (`None`: it accepts every message).
#[derive(Clone, Default)]
struct TwilioApi {
    sent: Arc<Mutex<Vec<Form>>>,
    calls: Arc<Mutex<usize>>,
    lookups: Arc<Mutex<usize>>,
    error: Arc<Mutex<Option<(StatusCode, Value)>>>,
    /// The status the message list answers with instead of the list.
    list_error: Arc<Mutex<Option<StatusCode>>>,
}

impl TwilioApi {
    fn answer_with(&self, status: StatusCode, body: Value) {
        *self.error.lock().unwrap() = Some((status, body));
    }

    fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
}

/// A stand-in for Twilio's Messages API: checks the account and Basic credentials and the
/// required fields, and answers as Twilio documents.
async fn twilio_messages(
    State(api): State<TwilioApi>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
    );
    if account != TWILIO_SID
        || headers.get("authorization").and_then(|h| h.to_str().ok()) != Some(&expected)
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "code": 20003, "message": "Authenticate", "status": 401 })),
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let has = |name: &str| form.iter().any(|(k, v)| k == name && !v.is_empty());
    if !(has("To") && has("From") && has("Body")) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({ "code": 21604, "message": "A 'To' phone number is required.", "status": 400 }),
            ),
        );
    }
    *api.calls.lock().unwrap() += 1;
    if let Some((status, body)) = api.error.lock().unwrap().clone() {
        return (status, axum::Json(body));
    }
    let mut sent = api.sent.lock().unwrap();
    sent.push(form);
    let sid = format!("SM{:032x}", sent.len());
    (
        StatusCode::CREATED,
        axum::Json(
            json!({ "sid": sid, "status": "queued", "num_segments": "1", "price": null, "price_unit": "EUR" }),
        ),
    )
}

/// Twilio's message list, filtered by `To` and `From` as Twilio does.
async fn twilio_list(
    State(api): State<TwilioApi>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, axum::Json<Value>) {
    *api.lookups.lock().unwrap() += 1;
    if let Some(status) = *api.list_error.lock().unwrap() {
        return (
            status,
            axum::Json(
                json!({ "code": 20500, "message": "Internal Server Error", "status": status.as_u16() }),
            ),
        );
    }
    let sent = api.sent.lock().unwrap();
    let messages: Vec<Value> = sent
        .iter()
        .enumerate()
        .filter(|(_, form)| {
            query.get("To").is_none_or(|to| field(form, "To") == to)
                && query
                    .get("From")
                    .is_none_or(|from| field(form, "From") == from)
        })
        .map(|(n, form)| {
            json!({ "sid": format!("SM{:032x}", n + 1), "to": field(form, "To"),
                    "from": field(form, "From"), "body": field(form, "Body"), "num_segments": "1",
                    "date_created": chrono::Utc::now().to_rfc2822() })
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({ "messages": messages, "page": 0 })),
    )
}

/// A Twilio channel sending through the stand-in at `api_base`, with `extra` TOML lines.
fn twilio_channel(api_base: &str, extra: &str) -> String {
    format!(
        "[channels.twilio]\nprovider = \"twilio\"\naccount_sid = \"{TWILIO_SID}\"\nauth_token = \"{TWILIO_TOKEN}\"\nsenders = [\"{TWILIO_NUMBER}\"]\napi_base_url = \"{api_base}\"\ncost_per_segment = 0.07\n{extra}"
    )
}

async fn start_twilio_stand_in() -> (String, TwilioApi) {
    let api = TwilioApi::default();
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            axum::routing::post(twilio_messages).get(twilio_list),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, api)
}

async fn twilio_webhook(
    client: &Client,
    server: &TestServer,
    hook: &str,
    params: &[(&str, &str)],
) -> StatusCode {
    let url = server.url(&format!("/webhooks/twilio/{hook}"));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(TWILIO_TOKEN, &url, params),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

async fn wait_for_sent(api: &TwilioApi, count: usize) -> Vec<Form> {
    for _ in 0..500 {
        let sent = api.sent.lock().unwrap().clone();
        if sent.len() >= count {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the Twilio stand-in received {} messages, expected {count}",
        api.sent.lock().unwrap().len()
    );
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

async fn a_conversation_runs_through_twilio(db: &TestDb) {
    let (api_base, api) = start_twilio_stand_in().await;
    // Without `server.public_url`, signatures are checked against the URL the test called.
    let server = TestServer::start(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
    )
    .await;
    let client = Client::new();
    let key = api_key(&db.storage, "crm").await;
    let (status, invitation) =
        invite(&client, &server, &key, &delivery_invitation("order-5")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    assert_eq!(invitation["channel"], "twilio");

    let sent = wait_for_sent(&api, 1).await;
    assert_eq!(field(&sent[0], "To"), CUSTOMER);
    assert_eq!(field(&sent[0], "From"), TWILIO_NUMBER);
    assert!(field(&sent[0], "Body").starts_with("Bonjour Ana"));
    let first_sid = format!("SM{:032x}", 1);

    // Twilio reports delivery, then a late "sent" that must not undo it.
    for status in ["delivered", "sent"] {
        let code = twilio_webhook(
            &client,
            &server,
            "status",
            &[
                ("MessageSid", &first_sid),
                ("MessageStatus", status),
                ("AccountSid", TWILIO_SID),
            ],
        )
        .await;
        assert_eq!(code, StatusCode::OK);
    }

    let inbound = |sid: &'static str, body: &'static str| {
        [
            ("MessageSid", sid),
            ("AccountSid", TWILIO_SID),
            ("From", CUSTOMER),
            ("To", TWILIO_NUMBER),
            ("Body", body),
            ("NumSegments", "1"),
        ]
    };
    assert_eq!(
        twilio_webhook(&client, &server, "inbound", &inbound("SMin1", "9")).await,
        StatusCode::OK
    );
    assert_eq!(
        twilio_webhook(&client, &server, "inbound", &inbound("SMin1", "9")).await,
        StatusCode::OK
    );
    let sent = wait_for_sent(&api, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        api.sent.lock().unwrap().len(),
        2,
        "a retried webhook sends nothing more"
    );
    assert_eq!(
        field(&sent[1], "From"),
        TWILIO_NUMBER,
        "replies leave from the customer's number"
    );

    let contact = contact_of(db, CUSTOMER).await;
    let messages = db.storage.contact_messages(&contact.id).await.unwrap();
    let first = messages
        .iter()
        .find(|m| m.provider_message_id.as_deref() == Some(first_sid.as_str()))
        .expect("the first question is recorded with Twilio's id");
    assert_eq!(
        first.status, "delivered",
        "a late 'sent' does not undo 'delivered'"
    );
    let answers = db
        .storage
        .conversation_answers(invitation["conversation_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].score, Some(9));
    server.stop().await;
}

pub(crate) async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The contact of `phone`, which must exist.
async fn contact_of(db: &TestDb, phone: &str) -> hearback::storage::ContactRecord {
    db.storage
        .contact_by_phone(&Phone::parse(phone, None).unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no contact for {phone}"))
}

async fn customer_messages(db: &TestDb) -> Vec<hearback::storage::MessageRecord> {
    let Some(contact) = db
        .storage
        .contact_by_phone(&Phone::parse(CUSTOMER, None).unwrap())
        .await
        .unwrap()
    else {
        return Vec::new();
    };
    db.storage.contact_messages(&contact.id).await.unwrap()
}

/// The server with a Twilio stand-in that refuses every send with `refusal` (a 400): invites
/// the customer for `event` and waits until the invitation fails, after one call (a permanent
/// refusal is not retried). Returns the server, a client, an API key, the stand-in and the
/// invitation's id.
async fn a_refused_first_question(
    db: &TestDb,
    refusal: Value,
    event: &str,
) -> (TestServer, Client, String, TwilioApi, String) {
    let (api_base, api) = start_twilio_stand_in().await;
    api.answer_with(StatusCode::BAD_REQUEST, refusal);
    let server = TestServer::start(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
    )
    .await;
    let client = Client::new();
    let key = api_key(&db.storage, "crm").await;
    let (_, invitation) = invite(&client, &server, &key, &delivery_invitation(event)).await;
    let id = invitation["id"].as_str().unwrap().to_string();
    wait_until("the invitation fails", || async {
        db.storage.invitation(&id).await.unwrap().unwrap().status == "failed"
    })
    .await;
    assert_eq!(api.calls(), 1, "a permanent refusal is not retried");
    (server, client, key, api, id)
}

async fn an_invalid_number_is_flagged_and_its_invitation_fails(db: &TestDb) {
    let (server, client, key, _, id) = a_refused_first_question(
        db,
        json!({ "code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400 }),
        "order-8",
    )
    .await;
    let record = db.storage.invitation(&id).await.unwrap().unwrap();
    assert_eq!(record.status_reason.as_deref(), Some("invalid"));
    let messages = customer_messages(db).await;
    assert_eq!(messages[0].status, "failed_permanent");
    let contact = contact_of(db, CUSTOMER).await;
    assert_eq!(contact.number_status, "invalid");
    assert_eq!(event_types(db).await, ["invitation.failed"]);
    // The company finds it among the failed invitations, as JSON and as CSV.
    let failed = get_json(
        &client,
        server.url("/api/v1/invitations?status=failed"),
        &key,
    )
    .await;
    let listed = &failed["invitations"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{failed}");
    assert_eq!(
        (
            &listed[0]["id"],
            &listed[0]["phone"],
            &listed[0]["number_status"],
            &listed[0]["status_reason"]
        ),
        (
            &json!(id),
            &json!(CUSTOMER),
            &json!("invalid"),
            &json!("invalid")
        ),
        "{failed}"
    );
    let csv = client
        .get(server.url("/api/v1/invitations?status=failed"))
        .bearer_auth(&key)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[0].starts_with("id,event_id,flow,unit,phone,number_status"),
        "{csv}"
    );
    assert!(
        lines[1].starts_with(&format!("{id},order-8,delivery,,{CUSTOMER},invalid,")),
        "{csv}"
    );
    server.stop().await;
}

/// Twilio refuses a send with 21610 (the customer replied STOP to the carrier), and later reports
/// another number's delivery failed with the same code: each number is then opted out here as a
/// STOP would leave it (`contact.opted_out`, its source the carrier), and the next invitation to
/// it is declined.
async fn a_number_opted_out_at_the_carrier_is_opted_out_here_too(db: &TestDb) {
    let (server, client, key, api, id) = a_refused_first_question(
        db,
        json!({ "code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400 }),
        "order-21",
    )
    .await;
    let record = db.storage.invitation(&id).await.unwrap().unwrap();
    assert_eq!(record.status_reason.as_deref(), Some("opted_out"));
    let contact = contact_of(db, CUSTOMER).await;
    assert!(contact.opted_out_at.is_some(), "opted out here too");
    assert_eq!(contact.number_status, "ok", "the number itself is fine");
    let events = db.storage.outbox_after(0, 100).await.unwrap();
    let opted_out: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "contact.opted_out")
        .collect();
    assert_eq!(opted_out.len(), 1, "{events:?}");
    assert_eq!(opted_out[0].payload.0["source"], "carrier:twilio");
    assert_eq!(opted_out[0].payload.0["contact"]["phone"], CUSTOMER);
    let (status, declined) = invite(&client, &server, &key, &delivery_invitation("order-22")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{declined}");
    assert_eq!(
        (&declined["status"], &declined["status_reason"]),
        (&json!("declined"), &json!("opted_out"))
    );

    // The same said by a status callback, after the provider had taken the message.
    *api.error.lock().unwrap() = None;
    let other = "+33612345688";
    let mut body = delivery_invitation("order-23");
    body["phone"] = json!(other);
    let (_, invitation) = invite(&client, &server, &key, &body).await;
    let id = invitation["id"].as_str().unwrap().to_string();
    wait_until("the question is sent", || async {
        db.storage.invitation(&id).await.unwrap().unwrap().status == "sent"
    })
    .await;
    let sid = format!("SM{:032x}", 1);
    let code = twilio_webhook(
        &client,
        &server,
        "status",
        &[
            ("MessageSid", &sid),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "21610"),
            ("AccountSid", TWILIO_SID),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let contact = contact_of(db, other).await;
    assert!(contact.opted_out_at.is_some());
    let record = db.storage.invitation(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status.as_str(), record.status_reason.as_deref()),
        ("failed", Some("opted_out"))
    );
    let opt_outs = db
        .storage
        .outbox_after(0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "contact.opted_out")
        .count();
    assert_eq!(opt_outs, 2);
    server.stop().await;
}

async fn an_outage_moves_the_message_to_the_fallback_channel(db: &TestDb) {
    let (api_base, api) = start_twilio_stand_in().await;
    api.answer_with(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "code": 20500, "message": "Internal Server Error", "status": 503 }),
    );
    let channels = format!(
        "{}\n[channels.backup]\nprovider = \"console\"\n",
        twilio_channel(&api_base, "fallback = \"backup\"\n")
    );
    let server = TestServer::start(config(db, &channels), db.storage.clone()).await;
    let client = Client::new();
    let key = api_key(&db.storage, "crm").await;
    let mut body = delivery_invitation("order-10");
    body["channel"] = json!("twilio");
    let (_, invitation) = invite(&client, &server, &key, &body).await;
    assert_eq!(invitation["channel"], "twilio");
    wait_until("the fallback channel sends the question", || async {
        customer_messages(db)
            .await
            .first()
            .is_some_and(|m| m.status == "sent")
    })
    .await;
    let messages = customer_messages(db).await;
    assert_eq!(messages[0].channel, "backup");
    assert_eq!(api.calls(), 2, "two failures, then the fallback");
    // The customer's reply reaches the conversation on the channel it moved to.
    let response = client
        .post(server.url("/webhooks/backup/inbound"))
        .json(&json!({ "id": "in-1", "from": CUSTOMER, "to": "backup", "text": "10" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answers = db
        .storage
        .conversation_answers(invitation["conversation_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(answers[0].score, Some(10));
    server.stop().await;
}

/// Stores an invitation without a server, as a previous run of hearback would have left it.
/// Records the contact's first question as sent, as the send job does once the provider has it
/// (a customer answers a survey they received); waits instead if a send job got there first.
async fn first_question_sent(db: &TestDb, phone: &str, invitation_id: &str) {
    let storage = &db.storage;
    let contact = contact_of(db, phone).await;
    wait_until("the first question is sent", || async {
        let status = storage
            .invitation(invitation_id)
            .await
            .unwrap()
            .unwrap()
            .status;
        if status != "scheduled" {
            return true;
        }
        for queued in storage.contact_messages(&contact.id).await.unwrap() {
            let now = hearback::time::Timestamp::now();
            if queued.direction == "outbound"
                && storage.mark_sending(&queued.id, now).await.unwrap()
            {
                let message = storage.outgoing_message(&queued.id).await.unwrap().unwrap();
                storage
                    .record_sent(&message, &format!("SM-{}", queued.id), None, now)
                    .await
                    .unwrap();
            }
        }
        false
    })
    .await;
}

/// An invitation stored as [`stored_invitation_for`] does, its first question already sent.
async fn sent_invitation_for(
    db: &TestDb,
    phone: &str,
    event_id: &str,
    channel: &str,
    sender: &str,
) -> String {
    let id = stored_invitation_for(db, phone, event_id, channel, sender).await;
    first_question_sent(db, phone, &id).await;
    id
}

async fn stored_invitation(db: &TestDb, event_id: &str, channel: &str, sender: &str) -> String {
    stored_invitation_for(db, CUSTOMER, event_id, channel, sender).await
}

async fn stored_invitation_for(
    db: &TestDb,
    phone: &str,
    event_id: &str,
    channel: &str,
    sender: &str,
) -> String {
    let in_three_days = hearback::time::Timestamp::now() + Duration::from_secs(3 * 86_400);
    stored_invitation_expiring(db, phone, event_id, channel, sender, in_three_days).await
}

async fn stored_invitation_expiring(
    db: &TestDb,
    phone: &str,
    event_id: &str,
    channel: &str,
    sender: &str,
    expires_at: hearback::time::Timestamp,
) -> String {
    let now = hearback::time::Timestamp::now();
    store_invitation(
        db,
        (phone, event_id),
        (channel, sender),
        (now, now),
        expires_at,
    )
    .await
}

/// An invitation of the delivery flow recorded through storage at `now`, its first question due
/// at `send_at`: opened at once when that is `now`, left to its opening job when it is later.
async fn store_invitation(
    db: &TestDb,
    (phone, event_id): (&str, &str),
    (channel, sender): (&str, &str),
    (now, send_at): (hearback::time::Timestamp, hearback::time::Timestamp),
    expires_at: hearback::time::Timestamp,
) -> String {
    let flows = hearback::flow::load_paths(&[concat!(env!("CARGO_MANIFEST_DIR"), "/flows").into()]);
    let flow = &flows.flows["delivery"];
    let variables: std::collections::BTreeMap<String, String> = [
        ("first_name", "Ana"),
        ("store", "Lyon 2"),
        ("order_date", "12/11"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let opening = (send_at <= now).then(|| {
        hearback::conversation::opening(
            flow,
            hearback::lang::Lang::Fr,
            variables.clone(),
            &hearback::conversation::ConversationIds {
                conversation_id: "",
                invitation_id: "",
                event_id,
                contact_id: "",
            },
            now,
        )
    });
    let outcome = db
        .storage
        .start_invitation(&hearback::storage::NewInvitation {
            source: "test".into(),
            event_id: event_id.into(),
            payload_hash: [0; 32],
            flow_id: "delivery".into(),
            phone: Phone::parse(phone, None).unwrap(),
            country: Some("FR".into()),
            locale: None,
            unit_id: None,
            variables: json!(variables),
            channel: channel.into(),
            sender: sender.into(),
            opening,
            send_max_attempts: 3,
            send_at,
            expires_at,
            remind_at: None,
            surveyed_within: None,
            quota: None,
            now,
        })
        .await
        .unwrap();
    match outcome {
        hearback::storage::InvitationOutcome::Created(record) => record.id,
        other => panic!("{other:?}"),
    }
}

/// Leaves the customer's first question `sending`, as a worker that died during the provider
/// call would; returns its text.
async fn left_sending(db: &TestDb) -> String {
    let queued = customer_messages(db).await;
    let now = hearback::time::Timestamp::now();
    assert!(db.storage.mark_sending(&queued[0].id, now).await.unwrap());
    queued[0].body.clone()
}

async fn an_unknown_send_that_the_provider_has_is_recorded_not_sent_again(db: &TestDb) {
    let (api_base, api) = start_twilio_stand_in().await;
    stored_invitation(db, "order-11", "twilio", TWILIO_NUMBER).await;
    let body = left_sending(db).await;
    // Twilio accepted it before the worker died.
    api.sent.lock().unwrap().push(vec![
        ("To".into(), CUSTOMER.into()),
        ("From".into(), TWILIO_NUMBER.into()),
        ("Body".into(), body),
    ]);
    let server = TestServer::start(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
    )
    .await;
    wait_until("the send is reconciled", || async {
        customer_messages(db).await[0].status == "sent"
    })
    .await;
    let messages = customer_messages(db).await;
    assert_eq!(
        messages[0].provider_message_id.as_deref(),
        Some(format!("SM{:032x}", 1).as_str())
    );
    assert_eq!(api.calls(), 0, "never sent twice");
    assert_eq!(*api.lookups.lock().unwrap(), 1);
    server.stop().await;
}

async fn an_unknown_send_that_the_provider_never_got_is_sent_once(db: &TestDb) {
    let (api_base, api) = start_twilio_stand_in().await;
    stored_invitation(db, "order-15", "twilio", TWILIO_NUMBER).await;
    left_sending(db).await;
    let server = TestServer::start(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
    )
    .await;
    wait_until("the message is sent", || async {
        customer_messages(db).await[0].status == "sent"
    })
    .await;
    assert_eq!(api.calls(), 1);
    assert_eq!(*api.lookups.lock().unwrap(), 1);
    server.stop().await;
}

/// A text left `sending` on a provider that cannot be asked is recorded `unknown`, never sent
/// again; the survey goes on as if it had gone out (its invitation sent, the outcome named), so
/// that the customer's reply finds it open and its reminder and expiry follow.
async fn an_unknown_send_the_provider_cannot_tell_about_is_reported_not_resent(db: &TestDb) {
    let invitation = stored_invitation(db, "order-16", "console", "console").await;
    left_sending(db).await;
    let server = TestServer::start(
        config(db, "[channels.console]\nprovider = \"console\"\n"),
        db.storage.clone(),
    )
    .await;
    wait_until("the message is reported unknown", || async {
        customer_messages(db).await[0].status == "unknown"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let messages = customer_messages(db).await;
    assert_eq!(messages[0].status, "unknown");
    assert_eq!(messages[0].provider_message_id, None, "never sent again");
    let invitation = db.storage.invitation(&invitation).await.unwrap().unwrap();
    assert_eq!(invitation.status, "sent");
    assert_eq!(invitation.status_reason.as_deref(), Some("outcome_unknown"));
    assert!(
        event_types(db)
            .await
            .contains(&"invitation.sent".to_string())
    );
    server.stop().await;
}

/// The first question's send job claimed, as many times as it may be, by a worker that died
/// each time (its leases expired long ago): the next claim finds it out of attempts.
async fn out_of_attempts(db: &TestDb) -> i64 {
    let message = &customer_messages(db).await[0];
    let job = db
        .storage
        .job_by_key(&format!("sms.send:{}", message.id))
        .await
        .unwrap()
        .unwrap();
    let start = hearback::time::Timestamp::now();
    for attempt in 0..job.max_attempts {
        let at = start + Duration::from_millis(10 * u64::from(attempt));
        let lease = Duration::from_millis(1);
        let claimed = db
            .storage
            .claim_jobs("dead-worker", &["sms.send"], 1, lease, at)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "attempt {}", attempt + 1);
    }
    job.id
}

/// The first question's worker died on its last attempt, after marking the text `sending` when
/// `begun`; a server then takes the job up. Returns once the invitation has failed, with the
/// stand-in, the job's id and the server (stopping it closes the database).
async fn text_abandoned(db: &TestDb, event_id: &str, begun: bool) -> (TwilioApi, i64, TestServer) {
    let (api_base, api) = start_twilio_stand_in().await;
    let invitation = stored_invitation(db, event_id, "twilio", TWILIO_NUMBER).await;
    if begun {
        left_sending(db).await;
    }
    let job = out_of_attempts(db).await;
    let server = TestServer::start(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
    )
    .await;
    wait_until("the invitation fails", || async {
        db.storage
            .invitation(&invitation)
            .await
            .unwrap()
            .unwrap()
            .status
            == "failed"
    })
    .await;
    assert_eq!(customer_messages(db).await[0].status, "failed_permanent");
    assert_eq!(api.calls(), 0, "never sent");
    (api, job, server)
}

/// A text whose worker died on its last attempt is not sent again, but it is not left queued
/// either: it fails, and its invitation with it, so that the company hears of it.
async fn a_text_whose_worker_died_on_its_last_attempt_fails_and_is_reported(db: &TestDb) {
    let (_, job, server) = text_abandoned(db, "order-17", false).await;
    let job = db.storage.job(job).await.unwrap().unwrap();
    assert_eq!(job.state, hearback::storage::JobState::Dead);
    assert!(
        event_types(db)
            .await
            .contains(&"invitation.failed".to_string())
    );
    server.stop().await;
}

/// The same, for a text its worker had begun to send: the provider is asked first, and one
/// it never got fails, without being sent.
async fn a_text_left_sending_on_its_last_attempt_is_reconciled_then_fails(db: &TestDb) {
    let (api, _, server) = text_abandoned(db, "order-18", true).await;
    assert_eq!(*api.lookups.lock().unwrap(), 1, "the provider was asked");
    server.stop().await;
}

/// The same, when the provider cannot be asked (its message list answers 500): the text is
/// recorded `unknown` and its job buried, instead of the lookup being tried again every lease.
async fn a_text_left_sending_on_its_last_attempt_that_the_provider_cannot_be_asked_about_is_unknown(
    db: &TestDb,
) {
    let (api_base, api) = start_twilio_stand_in().await;
    *api.list_error.lock().unwrap() = Some(StatusCode::INTERNAL_SERVER_ERROR);
    stored_invitation(db, "order-19", "twilio", TWILIO_NUMBER).await;
    left_sending(db).await;
    let job = out_of_attempts(db).await;
    let server = TestServer::start(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
    )
    .await;
    wait_until("the job is buried", || async {
        db.storage.job(job).await.unwrap().unwrap().state == hearback::storage::JobState::Dead
    })
    .await;
    let message = &customer_messages(db).await[0];
    assert_eq!(message.status, "unknown");
    assert_eq!(*api.lookups.lock().unwrap(), 1, "asked once");
    assert_eq!(api.calls(), 0, "never sent");
    server.stop().await;
}

/// A failure recorded after the text was recorded sent (a worker whose lease lapsed, a status
/// callback first) changes nothing: the text stays sent, its invitation is not failed, and no
/// `invitation.failed` goes out.
async fn a_failure_recorded_late_leaves_a_text_recorded_sent_as_it_is(db: &TestDb) {
    let invitation = stored_invitation(db, "order-20", "twilio", TWILIO_NUMBER).await;
    let queued = customer_messages(db).await;
    let message = db
        .storage
        .outgoing_message(&queued[0].id)
        .await
        .unwrap()
        .unwrap();
    let now = hearback::time::Timestamp::now();
    assert!(db.storage.mark_sending(&message.id, now).await.unwrap());
    db.storage
        .record_sent(&message, "SMsent", None, now)
        .await
        .unwrap();

    let failure = hearback::storage::SendFailure {
        status: "failed_permanent",
        error_code: Some("retries_exhausted"),
        number_status: None,
    };
    let recorded = db
        .storage
        .record_send_failure(&message, &failure, now)
        .await
        .unwrap();
    assert!(!recorded);
    assert_eq!(customer_messages(db).await[0].status, "sent");
    let invitation = db.storage.invitation(&invitation).await.unwrap().unwrap();
    assert_eq!(invitation.status, "sent");
    assert!(
        !event_types(db)
            .await
            .contains(&"invitation.failed".to_string())
    );
}

/// A STOP from `phone` to the Twilio number, stored as the inbound path would store it (no
/// server: no confirmation is queued).
async fn stop_stored(db: &TestDb, phone: &str, provider_message_id: &str) {
    let from = Phone::parse(phone, None).unwrap();
    db.storage
        .receive_inbound(&hearback::storage::NewInbound {
            channel: "twilio",
            provider_message_id,
            to: TWILIO_NUMBER,
            from: Some(&from),
            body: "STOP",
            consent: Some(hearback::storage::ConsentChange::OptedOut),
            received_at: hearback::time::Timestamp::now(),
        })
        .await
        .unwrap();
}

async fn a_message_queued_before_an_opt_out_is_never_sent(db: &TestDb) {
    let (api_base, api) = start_twilio_stand_in().await;
    stored_invitation(db, "order-12", "twilio", TWILIO_NUMBER).await;
    stop_stored(db, CUSTOMER, "SMstop").await;
    let server = TestServer::start(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
    )
    .await;
    wait_until("the question is given up", || async {
        customer_messages(db)
            .await
            .iter()
            .any(|m| m.direction == "outbound" && m.status == "failed_permanent")
    })
    .await;
    assert_eq!(api.calls(), 0);
    server.stop().await;
}

/// Sixty first questions queued before the server starts: the texts' lane takes them in
/// batches. Each reaches the provider once, in its own request, and is recorded with its
/// invitation; the number that opted out meanwhile (its STOP stored directly, so no
/// confirmation is queued) gets nothing and its invitation fails.
async fn sixty_queued_surveys_go_out_in_batches_each_once_but_to_an_opted_out_number(db: &TestDb) {
    let (api_base, api) = start_twilio_stand_in().await;
    let numbers: Vec<String> = (0..60).map(|n| format!("+336123457{n:02}")).collect();
    let mut invitations = Vec::new();
    for (n, phone) in numbers.iter().enumerate() {
        invitations.push(
            stored_invitation_for(db, phone, &format!("many-{n}"), "twilio", TWILIO_NUMBER).await,
        );
    }
    stop_stored(db, &numbers[30], "SMstop30").await;
    let server = TestServer::start(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
    )
    .await;
    let sent = wait_for_sent(&api, 59).await;
    let failed = &invitations[30];
    wait_until("the opted-out number's invitation fails", || async {
        db.storage.invitation(failed).await.unwrap().unwrap().status == "failed"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.calls(), 59, "nothing more is sent");
    let mut recipients: Vec<String> = sent
        .iter()
        .map(|form| field(form, "To").to_string())
        .collect();
    recipients.sort();
    recipients.dedup();
    let expected: Vec<String> = numbers
        .iter()
        .filter(|n| **n != numbers[30])
        .cloned()
        .collect();
    assert_eq!(
        recipients, expected,
        "every number once, none to the opted-out one"
    );
    for (n, id) in invitations.iter().enumerate() {
        let invitation = db.storage.invitation(id).await.unwrap().unwrap();
        let want = if n == 30 { "failed" } else { "sent" };
        assert_eq!(invitation.status, want, "invitation {n}");
    }
    let types = event_types(db).await;
    assert_eq!(types.iter().filter(|t| *t == "invitation.sent").count(), 59);
    assert_eq!(
        types.iter().filter(|t| *t == "invitation.failed").count(),
        1
    );
    server.stop().await;
}

async fn a_status_that_arrives_before_the_send_is_applied_with_it(db: &TestDb) {
    let now = hearback::time::Timestamp::now();
    stored_invitation(db, "order-13", "twilio", TWILIO_NUMBER).await;
    let queued = customer_messages(db).await;
    let delivered = hearback::storage::NewStatus {
        channel: "twilio",
        provider_message_id: "SMearly",
        status: "delivered",
        error_code: None,
        number_status: None,
        received_at: now,
    };
    assert!(db.storage.record_status(&delivered).await.unwrap());
    assert!(db.storage.mark_sending(&queued[0].id, now).await.unwrap());
    let message = db
        .storage
        .outgoing_message(&queued[0].id)
        .await
        .unwrap()
        .unwrap();
    db.storage
        .record_sent(
            &message,
            "SMearly",
            Some(hearback::storage::Spend {
                micros: 70_000,
                day: "2026-11-23",
            }),
            now,
        )
        .await
        .unwrap();
    assert_eq!(customer_messages(db).await[0].status, "delivered");
    // A late "sent" changes nothing; a retried callback neither.
    let late = hearback::storage::NewStatus {
        status: "sent",
        ..delivered.clone()
    };
    assert!(db.storage.record_status(&late).await.unwrap());
    assert!(!db.storage.record_status(&delivered).await.unwrap());
    assert_eq!(customer_messages(db).await[0].status, "delivered");

    // A refusal that says the number is a landline, before the send: the contact is flagged and
    // the invitation fails when the send is recorded.
    let landline = "+33612345699";
    let id = stored_invitation_for(db, landline, "order-18", "twilio", TWILIO_NUMBER).await;
    let contact = contact_of(db, landline).await;
    let queued = db.storage.contact_messages(&contact.id).await.unwrap();
    let refused = hearback::storage::NewStatus {
        provider_message_id: "SMlandline",
        status: "failed_permanent",
        error_code: Some("30006"),
        number_status: Some("landline"),
        ..delivered.clone()
    };
    assert!(db.storage.record_status(&refused).await.unwrap());
    assert!(db.storage.mark_sending(&queued[0].id, now).await.unwrap());
    let message = db
        .storage
        .outgoing_message(&queued[0].id)
        .await
        .unwrap()
        .unwrap();
    db.storage
        .record_sent(&message, "SMlandline", None, now)
        .await
        .unwrap();
    let contact = contact_of(db, landline).await;
    assert_eq!(contact.number_status, "landline");
    let invitation = db.storage.invitation(&id).await.unwrap().unwrap();
    assert_eq!(invitation.status, "failed");
    assert_eq!(invitation.status_reason.as_deref(), Some("landline"));
}

/// Three first questions marked `sending` and recorded `sent` together: a plain one, one whose
/// "delivered" came before the send, one refused as a landline before it. Each ends as its own
/// record would have left it, and a message already recorded is not recorded twice.
async fn a_batch_of_sends_is_recorded_as_each_send_would_be(db: &TestDb) {
    let now = hearback::time::Timestamp::now();
    let numbers = ["+33612345601", "+33612345602", "+33612345603"];
    let mut invitations = Vec::new();
    for (n, phone) in numbers.iter().enumerate() {
        invitations.push(
            stored_invitation_for(db, phone, &format!("batch-{n}"), "twilio", TWILIO_NUMBER).await,
        );
    }
    let mut messages = Vec::new();
    for phone in numbers {
        let contact = contact_of(db, phone).await;
        messages.push(
            db.storage.contact_messages(&contact.id).await.unwrap()[0]
                .id
                .clone(),
        );
    }
    for (provider_id, status, number_status) in [
        ("SMbatch1", "delivered", None),
        ("SMbatch2", "failed_permanent", Some("landline")),
    ] {
        let early = hearback::storage::NewStatus {
            channel: "twilio",
            provider_message_id: provider_id,
            status,
            error_code: None,
            number_status,
            received_at: now,
        };
        assert!(db.storage.record_status(&early).await.unwrap());
    }
    let ids: Vec<&str> = messages.iter().map(String::as_str).collect();
    assert_eq!(
        db.storage.mark_sending_many(&ids, now).await.unwrap().len(),
        3
    );
    assert!(
        db.storage
            .mark_sending_many(&ids, now)
            .await
            .unwrap()
            .is_empty(),
        "a message is marked sending once"
    );
    let read = db.storage.outgoing_messages(&ids).await.unwrap();
    let by_id = |id: &str| read.iter().find(|m| m.id == id).unwrap();
    let provider_ids = ["SMbatch0", "SMbatch1", "SMbatch2"];
    let sent: Vec<hearback::storage::SentMessage<'_>> = messages
        .iter()
        .zip(provider_ids)
        .map(|(id, provider_message_id)| hearback::storage::SentMessage {
            message: by_id(id),
            provider_message_id,
            cost: None,
            handed_at: Some(now),
        })
        .collect();
    db.storage.record_sent_many(&sent, now).await.unwrap();
    db.storage.record_sent_many(&sent, now).await.unwrap();

    let mut statuses = Vec::new();
    for (phone, id) in numbers.iter().zip(&invitations) {
        let contact = contact_of(db, phone).await;
        let message = &db.storage.contact_messages(&contact.id).await.unwrap()[0];
        let invitation = db.storage.invitation(id).await.unwrap().unwrap();
        statuses.push((
            message.status.clone(),
            message.provider_message_id.clone().unwrap_or_default(),
            invitation.status,
            contact.number_status,
        ));
    }
    let expected = |m: &str, p: &str, i: &str, n: &str| {
        (m.to_string(), p.to_string(), i.to_string(), n.to_string())
    };
    assert_eq!(
        statuses,
        [
            expected("sent", "SMbatch0", "sent", "ok"),
            expected("delivered", "SMbatch1", "sent", "ok"),
            expected("failed_permanent", "SMbatch2", "failed", "landline"),
        ]
    );
    let types = event_types(db).await;
    let count = |t: &str| types.iter().filter(|e| *e == t).count();
    assert_eq!(count("invitation.sent"), 3, "{types:?}");
    assert_eq!(count("invitation.failed"), 1, "{types:?}");
}

async fn one_instance_at_a_time_holds_a_channel(db: &TestDb) {
    let now = hearback::time::Timestamp::now();
    let soon = now + Duration::from_secs(10);
    let other = db.second_pool().await;
    assert!(
        db.storage
            .hold_channel_lease("twilio", "a", soon, now)
            .await
            .unwrap()
    );
    assert!(
        !other
            .hold_channel_lease("twilio", "b", soon, now)
            .await
            .unwrap()
    );
    assert!(
        db.storage
            .hold_channel_lease("twilio", "a", soon, now)
            .await
            .unwrap(),
        "the holder keeps it"
    );
    assert!(
        other
            .hold_channel_lease("console", "b", soon, now)
            .await
            .unwrap(),
        "channels are independent"
    );
    let later = soon + Duration::from_millis(1);
    assert!(
        other
            .hold_channel_lease("twilio", "b", later + Duration::from_secs(10), later)
            .await
            .unwrap(),
        "an expired lease passes on"
    );
    assert!(
        !db.storage
            .hold_channel_lease("twilio", "a", later + Duration::from_secs(10), later)
            .await
            .unwrap()
    );
    other.close().await;
}

const VONAGE_SECRET: &str = "vonage-signature-secret";

/// Vonage's SMS API signature with HMAC-SHA256: `&name=value` pairs sorted by name (`&` and `=`
/// in values replaced by `_`), in lower-case hex.
fn vonage_signed(params: &[(&str, String)]) -> Vec<(String, String)> {
    let mut sorted: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    sorted.sort();
    let signed: String = sorted
        .iter()
        .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
        .collect();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(VONAGE_SECRET.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    sorted.push(("sig".into(), hex::encode(mac.finalize().into_bytes())));
    sorted
}

async fn a_long_sms_in_parts_is_reassembled_before_it_is_read(db: &TestDb) {
    let channels = "[channels.vonage]\nprovider = \"vonage\"\napi_key = \"abcd1234\"\napi_secret = \"secret\"\nsignature_secret = \"vonage-signature-secret\"\nsignature_method = \"sha256\"\nsenders = [\"+33757000000\"]\n";
    let server = TestServer::start(config(db, channels), db.storage.clone()).await;
    let client = Client::new();
    let invitation_id =
        sent_invitation_for(db, CUSTOMER, "order-14", "vonage", TWILIO_NUMBER).await;
    let invitation = db
        .storage
        .invitation(&invitation_id)
        .await
        .unwrap()
        .unwrap();
    let conversation = invitation.conversation_id.unwrap();
    let part = |index: u32, text: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        vonage_signed(&[
            ("msisdn", CUSTOMER[1..].to_string()),
            ("to", TWILIO_NUMBER[1..].to_string()),
            ("messageId", format!("part-{index}")),
            ("text", text.to_string()),
            ("type", "text".into()),
            ("concat", "true".into()),
            ("concat-ref", "77".into()),
            ("concat-total", "2".into()),
            ("concat-part", index.to_string()),
            ("timestamp", now.to_string()),
        ])
    };
    let post = |form: Vec<(String, String)>| {
        let client = client.clone();
        let url = server.url("/webhooks/vonage/inbound");
        async move { client.post(url).form(&form).send().await.unwrap().status() }
    };
    // The second part first, twice (a provider retry): nothing is read yet.
    let second = part(2, "je mets 9");
    assert_eq!(post(second.clone()).await, StatusCode::OK);
    assert_eq!(post(second).await, StatusCode::OK);
    let inbound = |messages: &[hearback::storage::MessageRecord]| {
        messages.iter().filter(|m| m.direction == "inbound").count()
    };
    assert_eq!(
        inbound(&customer_messages(db).await),
        0,
        "a part alone is not a message"
    );
    let answers = db
        .storage
        .conversation_answers(&conversation)
        .await
        .unwrap();
    assert!(answers.is_empty(), "{answers:?}");

    assert_eq!(post(part(1, "Livraison parfaite, ")).await, StatusCode::OK);
    let messages = customer_messages(db).await;
    let whole: Vec<&hearback::storage::MessageRecord> = messages
        .iter()
        .filter(|m| m.direction == "inbound")
        .collect();
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].body, "Livraison parfaite, je mets 9");
    assert_eq!(whole[0].provider_message_id.as_deref(), Some("part-1"));
    // A late retry of a part changes nothing.
    assert_eq!(post(part(1, "Livraison parfaite, ")).await, StatusCode::OK);
    assert_eq!(inbound(&customer_messages(db).await), 1);
    let answers = db
        .storage
        .conversation_answers(&conversation)
        .await
        .unwrap();
    assert_eq!(answers[0].score, Some(9), "{answers:?}");
    assert_eq!(answers[1].text.as_deref(), Some("Livraison parfaite"));
    server.stop().await;
}

async fn two_messages_from_one_number_on_two_instances_are_applied_one_after_the_other(
    db: &TestDb,
) {
    let channels = "[channels.console]\nprovider = \"console\"\n";
    let first = TestServer::start(config(db, channels), db.storage.clone()).await;
    let second = TestServer::start(config(db, channels), db.second_pool().await).await;
    let client = Client::new();
    let customers: Vec<String> = (0..10).map(|n| format!("+336123456{n:02}")).collect();
    let mut conversations = Vec::new();
    for (n, phone) in customers.iter().enumerate() {
        let id = sent_invitation_for(db, phone, &format!("order-{n}"), "console", "console").await;
        conversations.push(
            db.storage
                .invitation(&id)
                .await
                .unwrap()
                .unwrap()
                .conversation_id
                .unwrap(),
        );
    }
    let post = |server: &TestServer, id: String, from: String, text: &'static str| {
        let client = client.clone();
        let url = server.url("/webhooks/console/inbound");
        async move {
            client
                .post(url)
                .json(&json!({ "id": id, "from": from, "to": "console", "text": text }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let mut sends = Vec::new();
    for (n, phone) in customers.iter().enumerate() {
        sends.push(tokio::spawn(post(
            &first,
            format!("a-{n}"),
            phone.clone(),
            "9",
        )));
        sends.push(tokio::spawn(post(
            &second,
            format!("b-{n}"),
            phone.clone(),
            "Le livreur etait super",
        )));
    }
    for send in sends {
        assert_eq!(send.await.unwrap(), StatusCode::OK);
    }
    for conversation in &conversations {
        let (_, version) = db
            .storage
            .conversation_status(conversation)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            version, 3,
            "opened, then each message applied once, one after the other"
        );
        let answers = db.storage.conversation_answers(conversation).await.unwrap();
        assert_eq!(
            answers
                .iter()
                .find(|a| a.question_id == "score")
                .and_then(|a| a.score),
            Some(9),
            "whichever came first, the score is kept: {answers:?}"
        );
    }
    first.stop().await;
    second.stop().await;
}

async fn a_message_that_fails_does_not_fail_the_others_committed_with_it(db: &TestDb) {
    use hearback::storage::{
        Advance, ConversationStatus, InboundOutcome, InboundPlan, NewAnswer, OwnedInbound,
        QueuedInbound,
    };
    sent_invitation_for(db, CUSTOMER, "order-17", "console", "console").await;
    // Several writers on PostgreSQL: a failure stays within its own batch whichever writer
    // takes it.
    let writer = hearback::storage::InboundWriter::start(db.storage.clone(), 3, None);
    let queued = |id: &str, from: &str, broken: bool| QueuedInbound {
        new: OwnedInbound {
            channel: "console".into(),
            provider_message_id: id.into(),
            to: "console".into(),
            from: Some(Phone::parse(from, None).unwrap()),
            body: "9".into(),
            consent: None,
            received_at: hearback::time::Timestamp::now(),
        },
        send_max_attempts: 3,
        plan: Arc::new(
            move |context: &hearback::storage::InboundContext| InboundPlan {
                // An answer the schema refuses: the whole transaction it is in fails.
                advance: (broken && context.conversation.is_some()).then(|| Advance {
                    state: json!({}),
                    status: ConversationStatus::Open,
                    answers: vec![NewAnswer {
                        question_id: "score".into(),
                        kind: "bogus",
                        score: None,
                        choice: None,
                        text: None,
                    }],
                    events: vec![],
                    messages: vec![],
                }),
                ..InboundPlan::default()
            },
        ),
    };
    let (first, broken, last) = tokio::join!(
        writer.submit(queued("ok-1", "+33612345601", false)),
        writer.submit(queued("bad", CUSTOMER, true)),
        writer.submit(queued("ok-2", "+33612345602", false)),
    );
    assert!(matches!(first.unwrap(), InboundOutcome::Stored { .. }));
    assert!(broken.is_err(), "the broken message fails alone");
    assert!(matches!(last.unwrap(), InboundOutcome::Stored { .. }));
    assert!(
        customer_messages(db)
            .await
            .iter()
            .all(|m| m.direction == "outbound"),
        "nothing of the broken message is kept"
    );
    // A message whose processing panics fails alone, and the writer goes on.
    let mut panicking = queued("panic", "+33612345603", false);
    panicking.plan = Arc::new(|_: &hearback::storage::InboundContext| -> InboundPlan {
        panic!("a bug in the engine")
    });
    assert!(writer.submit(panicking).await.is_err());
    assert!(matches!(
        writer
            .submit(queued("ok-3", "+33612345604", false))
            .await
            .unwrap(),
        InboundOutcome::Stored { .. }
    ));
    for phone in ["+33612345601", "+33612345602"] {
        let contact = contact_of(db, phone).await;
        assert_eq!(
            db.storage
                .contact_messages(&contact.id)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

async fn a_long_sms_whose_parts_stop_coming_is_kept_as_it_is(db: &TestDb) {
    use hearback::storage::MessagePart;
    let now = hearback::time::Timestamp::now();
    let two_days_ago =
        hearback::time::Timestamp::from_millis(now.as_millis() - 2 * 86_400_000).unwrap();
    let part = |reference: &str, index: i32, body: &str| MessagePart {
        provider_message_id: format!("{reference}-{index}"),
        sender: CUSTOMER[1..].to_string(),
        recipient: TWILIO_NUMBER.to_string(),
        reference: reference.to_string(),
        part_index: index,
        part_total: 3,
        body: body.to_string(),
    };
    for (index, body) in [(1, "Bonjour, "), (3, " merci")] {
        db.storage
            .store_message_part("vonage", &part("old", index, body), two_days_ago)
            .await
            .unwrap();
    }
    db.storage
        .store_message_part("vonage", &part("new", 1, "En cours"), now)
        .await
        .unwrap();

    let day_ago = hearback::time::Timestamp::from_millis(now.as_millis() - 86_400_000).unwrap();
    let kept = hearback::jobs::maintenance::flush_incomplete_messages(&db.storage, day_ago, now)
        .await
        .unwrap();
    assert_eq!(kept, 1, "only the message whose parts stopped a day ago");
    let messages = customer_messages(db).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, "Bonjour, […] merci");
    assert_eq!(messages[0].provider_message_id.as_deref(), Some("old-1"));
    let again = hearback::jobs::maintenance::flush_incomplete_messages(&db.storage, day_ago, now)
        .await
        .unwrap();
    assert_eq!(again, 0, "kept once");
    let waiting = db
        .storage
        .store_message_part("vonage", &part("new", 2, "..."), now)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 2, "a message still arriving is left alone");
}

async fn an_unanswered_conversation_expires_and_the_number_can_be_surveyed_again(db: &TestDb) {
    // Due a second after the first question, which goes out at once: an expiry never comes
    // before the first question.
    let soon = hearback::time::Timestamp::now() + Duration::from_secs(1);
    let id = stored_invitation_expiring(db, CUSTOMER, "order-19", "console", "console", soon).await;
    let conversation = db
        .storage
        .invitation(&id)
        .await
        .unwrap()
        .unwrap()
        .conversation_id
        .unwrap();
    let (server, client, key) = console_server(db).await;
    wait_until("the conversation expires", || async {
        db.storage
            .conversation_status(&conversation)
            .await
            .unwrap()
            .unwrap()
            .0
            == "expired"
    })
    .await;
    let types = event_types(db).await;
    assert!(types.contains(&"response.expired".to_string()), "{types:?}");
    // A reply after the expiry is kept and moves nothing.
    reply(&client, &server, "late-1", "9").await;
    assert!(
        db.storage
            .conversation_answers(&conversation)
            .await
            .unwrap()
            .is_empty()
    );
    // The expired conversation no longer blocks one on this number (through a flow with no
    // frequency cap of its own: the delivery flow's own 30 days would decline it).
    let mut next = delivery_invitation("order-20");
    next["flow"] = json!("repair");
    next["variables"] = json!({ "first_name": "Ana", "store": "Lyon 2" });
    let (status, next) = invite(&client, &server, &key, &next).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(next["status"], "scheduled", "{next}");
    server.stop().await;
}

/// An answer without its ids: question, score, choice, text.
type AnswerFields = (String, Option<i32>, Option<String>, Option<String>);

/// Everything stored about one customer, without ids, for comparing two customers.
#[derive(Debug, PartialEq)]
struct Footprint {
    outcomes: Vec<String>,
    conversation: Option<(String, i64)>,
    answers: Vec<AnswerFields>,
    messages: Vec<(String, String, String)>,
    consents: Vec<String>,
    events: Vec<String>,
}

async fn footprint(
    db: &TestDb,
    phone: &str,
    invitation: &str,
    outcomes: &[hearback::storage::InboundOutcome],
) -> Footprint {
    use hearback::storage::InboundOutcome;
    let storage = &db.storage;
    let contact = contact_of(db, phone).await;
    let conversation = storage
        .invitation(invitation)
        .await
        .unwrap()
        .unwrap()
        .conversation_id
        .unwrap();
    Footprint {
        outcomes: outcomes
            .iter()
            .map(|o| match o {
                InboundOutcome::Duplicate => "duplicate".to_string(),
                InboundOutcome::Stored {
                    consent_changed, ..
                } => format!("stored {consent_changed:?}"),
            })
            .collect(),
        conversation: storage.conversation_status(&conversation).await.unwrap(),
        answers: storage
            .conversation_answers(&conversation)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.question_id, a.score, a.choice, a.text))
            .collect(),
        messages: storage
            .contact_messages(&contact.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.direction, m.body, m.status))
            .collect(),
        consents: storage
            .contact_consents(&contact.id)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.change)
            .collect(),
        events: storage
            .outbox_after(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.contact_id.as_deref() == Some(contact.id.as_str()))
            .map(|e| e.event_type)
            .collect(),
    }
}

/// The batched writer plans a batch in memory and writes it with one statement per table; what
/// it stores must be exactly what the messages stored one by one would: a provider retry inside
/// the batch, a conversation advanced several times, a STOP that ends it, a reply after the STOP,
/// a START, and a message from no valid number.
/// A text from `phone` to the console channel, queued for an inbound writer as the webhook
/// handler queues it, planned against `flows`.
fn queued_inbound(
    flows: &Arc<std::collections::BTreeMap<String, hearback::flow::Flow>>,
    phone: &str,
    provider_message_id: &str,
    text: &str,
    now: hearback::time::Timestamp,
) -> hearback::storage::QueuedInbound {
    use hearback::storage::{InboundContext, OwnedInbound, QueuedInbound};
    let keyword = hearback::understand::keyword(text);
    let consent = match keyword {
        Some(hearback::understand::Keyword::OptOut) => {
            Some(hearback::storage::ConsentChange::OptedOut)
        }
        Some(hearback::understand::Keyword::OptIn) => {
            Some(hearback::storage::ConsentChange::OptedIn)
        }
        _ => None,
    };
    let flows = Arc::clone(flows);
    let text = text.to_string();
    QueuedInbound {
        new: OwnedInbound {
            channel: "console".into(),
            provider_message_id: provider_message_id.into(),
            to: "console".into(),
            from: Some(Phone::parse(phone, None).unwrap()),
            body: text.clone(),
            consent,
            received_at: now,
        },
        send_max_attempts: 3,
        plan: Arc::new(move |context: &InboundContext| {
            let planning = hearback::conversation::Planning {
                flows: &flows,
                rules: &hearback::alerts::AlertRules::empty(),
                email: false,
            };
            hearback::conversation::plan_inbound(planning, context, keyword, &text, now)
        }),
    }
}

/// The ids of the texts to `phone` still queued, oldest first.
async fn queued_texts_to(db: &TestDb, phone: &str) -> impl Iterator<Item = String> {
    let contact = contact_of(db, phone).await;
    db.storage
        .contact_messages(&contact.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == "outbound" && m.status == "queued")
        .map(|m| m.id)
}

/// The ids of the texts that handed send jobs send.
fn handed_texts(jobs: &[hearback::storage::ClaimedJob]) -> impl Iterator<Item = String> + '_ {
    jobs.iter()
        .map(|job| job.payload["message_id"].as_str().unwrap().to_string())
}

/// PostgreSQL (several instances run on it only): an answer to a customer whose earlier answer
/// waits for the claims (another instance wrote it through a channel it does not hold, or had no
/// room to hand it over) is written for the claims too: handed over, it would overtake the
/// earlier one. Another customer's answer in the same batch is handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_behind_one_left_to_the_claims_is_not_handed_over() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    answer_behind_one_left_to_the_claims(&db).await;
    db.cleanup().await;
}

async fn answer_behind_one_left_to_the_claims(db: &TestDb) {
    let flows = Arc::new(
        hearback::flow::load_paths(&[concat!(env!("CARGO_MANIFEST_DIR"), "/flows").into()]).flows,
    );
    let (waiting, free) = ("+33612345633", "+33612345644");
    sent_invitation_for(db, waiting, "order-w", "console", "console").await;
    sent_invitation_for(db, free, "order-f", "console", "console").await;
    let now = hearback::time::Timestamp::now();
    let lease = |most| hearback::storage::JobLease {
        owner: "texts-lane-under-test".into(),
        expires_at: now + std::time::Duration::from_secs(60),
        most,
        not_through: Vec::new(),
        not_to: Vec::new(),
    };

    // No room: the first answer is left to the claims.
    let first = queued_inbound(&flows, waiting, "w-1", "9", now);
    let applied = db
        .storage
        .receive_batch(&[&first], Some(&lease(0)))
        .await
        .unwrap();
    assert_eq!((applied.claimed.len(), applied.left_pending), (0, 1));

    let second = queued_inbound(&flows, waiting, "w-2", "Livreur tres aimable", now);
    let other = queued_inbound(&flows, free, "f-1", "8", now);
    let applied = db
        .storage
        .receive_batch(&[&second, &other], Some(&lease(usize::MAX)))
        .await
        .unwrap();
    let handed: Vec<String> = handed_texts(&applied.claimed).collect();
    let waiting_texts: Vec<String> = queued_texts_to(db, waiting).await.collect();
    assert_eq!(
        waiting_texts.len(),
        2,
        "both answers queued: {waiting_texts:?}"
    );
    assert_eq!(handed, queued_texts_to(db, free).await.collect::<Vec<_>>());
    // Left behind on purpose, not for lack of room: the handover goes on.
    assert_eq!(applied.left_pending, 0);
    for text in waiting_texts {
        let job = db
            .storage
            .job_by_key(&format!("sms.send:{text}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.state, hearback::storage::JobState::Pending);
    }
}

async fn a_batch_applies_its_messages_exactly_as_one_by_one(db: &TestDb) {
    use hearback::storage::{InboundContext, QueuedInbound};
    let flows = Arc::new(
        hearback::flow::load_paths(&[concat!(env!("CARGO_MANIFEST_DIR"), "/flows").into()]).flows,
    );
    let script = [
        ("1", "8"),
        ("1", "8"),
        ("2", "Livreur tres aimable"),
        ("3", "STOP"),
        ("4", "oui"),
        ("5", "START"),
        ("6", "aide"),
    ];
    let messages = |phone: &str, prefix: &str| -> Vec<QueuedInbound> {
        let now = hearback::time::Timestamp::now();
        let mut queued: Vec<QueuedInbound> = script
            .iter()
            .map(|(id, text)| queued_inbound(&flows, phone, &format!("{prefix}-{id}"), text, now))
            .collect();
        let mut anonymous = queued[0].new.clone();
        anonymous.provider_message_id = format!("{prefix}-anonymous");
        anonymous.from = None;
        queued.push(QueuedInbound {
            new: anonymous,
            send_max_attempts: 3,
            plan: Arc::new(|_: &InboundContext| hearback::storage::InboundPlan::default()),
        });
        queued
    };
    let (batched, one_by_one) = ("+33612345611", "+33612345622");
    let batched_invitation =
        sent_invitation_for(db, batched, "order-b", "console", "console").await;
    let single_invitation =
        sent_invitation_for(db, one_by_one, "order-s", "console", "console").await;

    let batch = messages(batched, "b");
    let refs: Vec<&QueuedInbound> = batch.iter().collect();
    // Written as a server's writer does: the answers' send jobs claimed in its texts lane's name.
    let lease = hearback::storage::JobLease {
        owner: "texts-lane-under-test".into(),
        expires_at: hearback::time::Timestamp::now() + std::time::Duration::from_secs(60),
        most: usize::MAX,
        not_through: Vec::new(),
        not_to: Vec::new(),
    };
    let applied = db.storage.receive_batch(&refs, Some(&lease)).await.unwrap();
    let batch_outcomes = applied.outcomes;
    let mut single_outcomes = Vec::new();
    for queued in messages(one_by_one, "s") {
        single_outcomes.push(
            db.storage
                .receive_and_apply(&queued.new.borrowed(), 3, &*queued.plan)
                .await
                .unwrap(),
        );
    }

    // Every text the batch queued has its send job, claimed under the lease and handed back;
    // nothing else was claimed.
    let queued_texts: std::collections::BTreeSet<String> =
        queued_texts_to(db, batched).await.collect();
    let handed: std::collections::BTreeSet<String> = handed_texts(&applied.claimed).collect();
    assert_eq!(handed, queued_texts);
    assert_eq!(applied.claimed.len(), queued_texts.len());
    assert_eq!(applied.left_pending, 0);
    for job in &applied.claimed {
        assert_eq!((job.kind.as_str(), job.attempt), ("sms.send", 1));
        let record = db.storage.job(job.id).await.unwrap().unwrap();
        assert_eq!(record.state, hearback::storage::JobState::Running);
        assert_eq!(record.lease_owner.as_deref(), Some("texts-lane-under-test"));
        assert_eq!(record.attempts, 1);
    }

    let from_batch = footprint(db, batched, &batched_invitation, &batch_outcomes).await;
    let from_singles = footprint(db, one_by_one, &single_invitation, &single_outcomes).await;
    assert_eq!(from_batch, from_singles);
    // And the scenario did what it says: the retry changed nothing, the survey took two answers
    // and ended with the STOP, the START and the help request were answered.
    assert_eq!(from_batch.outcomes[1], "duplicate");
    assert_eq!(from_batch.answers.len(), 2, "{from_batch:?}");
    assert_ne!(from_batch.conversation.as_ref().unwrap().0, "open");
    assert_eq!(from_batch.consents, ["opted_out", "opted_in"]);
    assert!(
        from_batch.events.iter().any(|e| e == "contact.opted_out"),
        "{from_batch:?}"
    );
}

/// A configuration with `dispatch` as its `[dispatch]` settings (empty: the defaults), a console
/// channel, and `flow` (YAML) as its flows `quick` and `other`.
pub(crate) fn scheduled_config(
    db: &TestDb,
    dispatch: &str,
    flow: &str,
) -> (Config, tempfile::TempDir) {
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(flows.path().join("quick.yaml"), flow).unwrap();
    let other = flow.replace("id: quick", "id: other");
    std::fs::write(flows.path().join("other.yaml"), other).unwrap();
    let config = db.config_from_toml(&format!(
        "[flows]\ndir = \"{}\"\n\n[jobs]\npoll_interval_ms = 20\n\n[dispatch]\n{dispatch}\n\n\
         [channels.console]\nprovider = \"console\"\n",
        flows.path().display()
    ));
    (config, flows)
}

/// The delivery flow with `dispatch` (YAML, empty for the defaults: no delay, the default
/// window) as its dispatch settings.
pub(crate) fn quick_flow(dispatch: &str) -> String {
    let delivery =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flows/delivery.yaml"))
            .unwrap();
    let (head, rest) = delivery.split_once("dispatch:").unwrap();
    let (_, tail) = rest.split_once("\nstart:").unwrap();
    let dispatch = if dispatch.is_empty() {
        String::new()
    } else {
        format!("dispatch:\n{dispatch}\n")
    };
    format!("{head}{dispatch}\nstart:{tail}").replace("id: delivery", "id: quick")
}

async fn an_event_on_saturday_night_in_paris_is_texted_on_monday_morning(db: &TestDb) {
    use chrono::{Datelike, Duration as Days, TimeZone, Weekday};
    use chrono_tz::Europe::Paris;
    let (config, _flows) = scheduled_config(db, "", &quick_flow(""));
    let clock = hearback::time::Clock::system();
    let server = TestServer::start_with_clock(config, db.storage.clone(), clock.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    // A coming Saturday whose Monday is a working day (not Easter or Whit Monday).
    let mut saturday = chrono::Utc::now().with_timezone(&Paris).date_naive() + Days::days(2);
    while saturday.weekday() != Weekday::Sat
        || hearback::schedule::HolidayCalendar::france().is_holiday(saturday + Days::days(2))
    {
        saturday += Days::days(1);
    }
    let event = Paris
        .from_local_datetime(&saturday.and_hms_opt(21, 30, 0).unwrap())
        .unwrap();
    let monday_eight = Paris
        .from_local_datetime(&(saturday + Days::days(2)).and_hms_opt(8, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut body = json!({
        "event_id": "order-sat",
        "flow": "quick",
        "phone": CUSTOMER,
        "variables": { "first_name": "Ana", "store": "Lyon 2", "order_date": "12/11" },
        "event_time": event.to_rfc3339(),
    });
    let (status, invitation) = invite(&client, &server, &key, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    assert_eq!(invitation["status"], "scheduled");
    let send_at: chrono::DateTime<chrono::Utc> =
        invitation["send_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(send_at, monday_eight, "{invitation}");
    // The same event again: the same invitation, the same time, one message.
    let (status, again) = invite(&client, &server, &key, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["id"], invitation["id"]);
    assert_eq!(again["send_at"], invitation["send_at"]);
    // Nothing before Monday: the survey opens when its first question is due.
    assert!(invitation["conversation_id"].is_null(), "{invitation}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(console_messages(&client, &server, &key).await.is_empty());
    // An event time out of range is refused, naming the field.
    body["event_id"] = json!("order-far");
    body["event_time"] = json!("2001-01-01T00:00:00Z");
    let (status, refused) = invite(&client, &server, &key, &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["error"]["details"]["fields"]["event_time"].is_string(),
        "{refused}"
    );
    // Monday 07:59 on the server's clock: still nothing. 08:00: the first question goes out.
    let until =
        |at: chrono::DateTime<chrono::Utc>| (at - clock.now().as_datetime()).to_std().unwrap();
    clock.advance(until(monday_eight) - Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(console_messages(&client, &server, &key).await.is_empty());
    clock.advance(Duration::from_secs(60));
    let sent = sent_to_customer(&client, &server, &key, 1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]["body"].as_str().unwrap().starts_with("Bonjour Ana"),
        "{sent:?}"
    );
    let id = invitation["id"].as_str().unwrap();
    let opened = get_json(
        &client,
        server.url(&format!("/api/v1/invitations/{id}")),
        &key,
    )
    .await;
    assert_eq!(opened["status"], "sent", "{opened}");
    assert!(opened["conversation_id"].is_string(), "{opened}");
    server.stop().await;
}

/// A server on a clock the test moves, its quick flow due two hours after the event, inside the
/// window, with no frequency cap; and the survey it planned for `event`, scheduled.
struct PlannedSurvey {
    server: TestServer,
    client: Client,
    key: String,
    clock: hearback::time::Clock,
    planned: Value,
    /// The flows' folder, for as long as the server runs.
    _flows: tempfile::TempDir,
}

async fn a_survey_planned_in_two_hours(db: &TestDb, event: &str) -> PlannedSurvey {
    let (config, flows) =
        scheduled_config(db, "frequency_cap_days = 0", &quick_flow("  delay: 2h"));
    let clock = hearback::time::Clock::system();
    let server = TestServer::start_with_clock(config, db.storage.clone(), clock.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let mut body = delivery_invitation(event);
    body["flow"] = json!("quick");
    let (status, planned) = invite(&client, &server, &key, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{planned}");
    assert_eq!(planned["status"], "scheduled", "{planned}");
    PlannedSurvey {
        server,
        client,
        key,
        clock,
        planned,
        _flows: flows,
    }
}

async fn a_survey_planned_for_later_holds_its_channel_but_no_conversation(db: &TestDb) {
    // No frequency cap, so that only the conversation held can decline the second survey.
    let PlannedSurvey {
        server,
        client,
        key,
        clock,
        planned,
        _flows,
    } = a_survey_planned_in_two_hours(db, "order-later").await;
    assert!(planned["conversation_id"].is_null(), "{planned}");
    // Another survey of the same customer on the same channel meanwhile: declined.
    let mut other = delivery_invitation("order-other");
    other["flow"] = json!("other");
    let (status, declined) = invite(&client, &server, &key, &other).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{declined}");
    assert_eq!(declined["status"], "declined", "{declined}");
    assert_eq!(declined["status_reason"], "open_conversation", "{declined}");
    // A text from the customer before the survey is not an answer to it.
    reply(&client, &server, "early-1", "9").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(console_messages(&client, &server, &key).await.is_empty());

    // At its time, the survey opens and asks its first question, from the start.
    let send_at: chrono::DateTime<chrono::Utc> =
        planned["send_at"].as_str().unwrap().parse().unwrap();
    clock.advance((send_at - clock.now().as_datetime()).to_std().unwrap() + Duration::from_secs(1));
    let sent = sent_to_customer(&client, &server, &key, 1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]["body"].as_str().unwrap().contains("de 0 à 10"),
        "{sent:?}"
    );
    let id = planned["id"].as_str().unwrap();
    let opened = get_json(
        &client,
        server.url(&format!("/api/v1/invitations/{id}")),
        &key,
    )
    .await;
    let conversation = opened["conversation_id"].as_str().unwrap().to_string();
    // Now the customer's answer is one.
    reply(&client, &server, "answer-1", "9").await;
    wait_until("the score is recorded", || async {
        db.storage
            .conversation_answers(&conversation)
            .await
            .unwrap()
            .len()
            == 1
    })
    .await;
    server.stop().await;
}

async fn an_invitation_opens_once_and_never_for_an_erased_opted_out_or_unknown_flow(db: &TestDb) {
    use hearback::storage::{OpenPlan, Opening};
    let now = hearback::time::Timestamp::now();
    let (later, expires) = (
        now + Duration::from_secs(3_600),
        now + Duration::from_secs(4 * 86_400),
    );
    let flows = hearback::flow::load_paths(&[concat!(env!("CARGO_MANIFEST_DIR"), "/flows").into()]);
    let flows = flows.flows;
    let plan = |invitation_id: String| OpenPlan {
        invitation_id,
        sender: "console".into(),
        country: Some("FR".into()),
        send_at: later,
        expires_at: expires,
        remind_at: None,
    };
    let open = |plans: Vec<OpenPlan>| {
        let flows = &flows;
        async move {
            db.storage
                .open_invitations(&plans, 3, later, |invitation, conversation| {
                    hearback::jobs::open::opening(flows, invitation, conversation, later)
                })
                .await
                .unwrap()
        }
    };
    let first = store_invitation(
        db,
        (CUSTOMER, "order-1"),
        ("console", "console"),
        (now, later),
        expires,
    )
    .await;
    assert!(
        customer_messages(db).await.is_empty(),
        "nothing written before it is due"
    );
    // Opened once: a second run (a worker that died before recording its job) changes nothing.
    let opened = open(vec![plan(first.clone())]).await;
    let Opening::Opened { conversation_id } = &opened[0] else {
        panic!("{opened:?}")
    };
    assert_eq!(
        open(vec![plan(first.clone())]).await,
        vec![Opening::AlreadyOpen]
    );
    let record = db.storage.invitation(&first).await.unwrap().unwrap();
    assert_eq!(record.conversation_id.as_ref(), Some(conversation_id));
    let queued = customer_messages(db).await;
    assert_eq!(queued.len(), 1, "one first question: {queued:?}");

    // A customer erased before their survey opens is never texted.
    let erased_phone = "+33612345699";
    let second = store_invitation(
        db,
        (erased_phone, "order-2"),
        ("console", "console"),
        (now, later),
        expires,
    )
    .await;
    let phone = Phone::parse(erased_phone, None).unwrap();
    db.storage
        .clone()
        .with_privacy_key(hearback::privacy::HashKey::new(
            *b"a test key of thirty-two bytes!!",
        ))
        .erase_contact(&phone, &hearback::storage::Actor::System, now)
        .await
        .unwrap();
    assert_eq!(
        open(vec![plan(second.clone())]).await,
        vec![Opening::NotScheduled]
    );
    assert!(
        db.storage
            .invitation(&second)
            .await
            .unwrap()
            .unwrap()
            .conversation_id
            .is_none()
    );

    // A number that opted out meanwhile is declined when its survey would open; a batch gives
    // each invitation its own outcome, in order.
    let opted_out_phone = "+33612345697";
    let fourth = store_invitation(
        db,
        (opted_out_phone, "order-4"),
        ("console", "console"),
        (now, later),
        expires,
    )
    .await;
    stop_stored(db, opted_out_phone, "stop-4").await;
    let outcomes = open(vec![
        plan(fourth.clone()),
        plan(first.clone()),
        plan(second.clone()),
    ])
    .await;
    assert_eq!(
        outcomes,
        vec![
            Opening::Declined("opted_out"),
            Opening::AlreadyOpen,
            Opening::NotScheduled
        ]
    );
    let declined = db.storage.invitation(&fourth).await.unwrap().unwrap();
    assert_eq!(
        (declined.status.as_str(), declined.status_reason.as_deref()),
        ("declined", Some("opted_out"))
    );
    assert!(declined.conversation_id.is_none());

    // A flow no longer loaded fails its invitation, with the reason, and opens nothing.
    let third = store_invitation(
        db,
        ("+33612345698", "order-3"),
        ("console", "console"),
        (now, later),
        expires,
    )
    .await;
    let outcome = db
        .storage
        .open_invitations(&[plan(third.clone())], 3, later, |_, _| {
            Err("unknown_flow".into())
        })
        .await
        .unwrap();
    assert_eq!(outcome, vec![Opening::Failed("unknown_flow".into())]);
    let failed = db.storage.invitation(&third).await.unwrap().unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.status_reason.as_deref()),
        ("failed", Some("unknown_flow"))
    );
    assert!(failed.conversation_id.is_none());
    assert!(
        event_types(db)
            .await
            .contains(&"invitation.failed".to_string())
    );

    // A survey planned and not opened yet holds the customer's channel; one whose time is two
    // days past and still not opened (its opening job died) no longer does.
    let (phone, day) = ("+33612345696", Duration::from_secs(86_400));
    let stale = store_invitation(
        db,
        (phone, "order-5"),
        ("console", "console"),
        (now - 3 * day, now - 2 * day),
        expires,
    )
    .await;
    let status = |id: String| async move {
        let record = db.storage.invitation(&id).await.unwrap().unwrap();
        (record.status, record.status_reason)
    };
    assert_eq!(status(stale.clone()).await, ("scheduled".into(), None));
    let next = store_invitation(
        db,
        (phone, "order-6"),
        ("console", "console"),
        (now, later),
        expires,
    )
    .await;
    assert_eq!(status(next.clone()).await, ("scheduled".into(), None));
    let held = store_invitation(
        db,
        (phone, "order-7"),
        ("console", "console"),
        (now, later),
        expires,
    )
    .await;
    assert_eq!(
        status(held).await,
        ("declined".into(), Some("open_conversation".into()))
    );
    // The next survey opens; the stale one's job, run at last, finds the channel taken and
    // declines it as intake would have.
    assert!(matches!(
        open(vec![plan(next)]).await[..],
        [Opening::Opened { .. }]
    ));
    assert_eq!(
        open(vec![plan(stale.clone())]).await,
        vec![Opening::Declined("open_conversation")]
    );
    assert_eq!(
        status(stale).await,
        ("declined".into(), Some("open_conversation".into()))
    );
}

async fn a_first_message_due_outside_the_window_waits_for_it(db: &TestDb) {
    use chrono::{Datelike, Duration as Days};
    use chrono_tz::Europe::Paris;
    // A window open only on a day three days from now: whenever the test runs, not now.
    let today = chrono::Utc::now().with_timezone(&Paris).date_naive();
    let open_day = (today + Days::days(3)).weekday();
    let day =
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][open_day.num_days_from_monday() as usize];
    let (config, _flows) = scheduled_config(db, &format!("days = [\"{day}\"]"), &quick_flow(""));
    // Stored as due now (as a backlog would be), then the server starts.
    stored_invitation(db, "order-backlog", "console", "console").await;
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let messages = console_messages(&client, &server, &key).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        messages[0]["status"], "queued",
        "held until the window opens"
    );
    let counts = db.storage.job_counts().await.unwrap();
    assert!(
        counts
            .iter()
            .all(|c| c.state != hearback::storage::JobState::Dead || c.count == 0),
        "held, not failed: {counts:?}"
    );
    server.stop().await;
}

async fn a_silent_customer_is_reminded_once_then_the_conversation_expires(db: &TestDb) {
    // The product's durations (a reminder after 20 hours, expiry after 3 days) on a clock the
    // test moves; no window (the test runs at any hour): the timing is the flow's.
    let clock = hearback::time::Clock::system();
    let (server, client, key, invitation, _flows) =
        a_survey_with_a_reminder(db, ("20h", "72h"), "immediate = true", &clock).await;
    let conversation = invitation["conversation_id"].as_str().unwrap().to_string();
    let status = || survey_status(db, &conversation);
    let hours = |n: u64| Duration::from_secs(n * 3_600);
    let settle = || tokio::time::sleep(Duration::from_millis(300));

    // Not before its time: 19 hours on, nothing more.
    clock.advance(hours(19));
    settle().await;
    assert_eq!(console_messages(&client, &server, &key).await.len(), 1);
    // Past 20 hours: the reminder.
    clock.advance(hours(2));
    let sent = sent_to_customer(&client, &server, &key, 2).await;
    assert!(
        sent[1]["body"]
            .as_str()
            .unwrap()
            .starts_with("Petit rappel"),
        "{sent:?}"
    );
    // 71 hours on, still open; past 72, expired.
    clock.advance(hours(50));
    settle().await;
    assert_eq!(status().await, "open");
    clock.advance(hours(2));
    wait_until("the conversation expires", || async {
        status().await == "expired"
    })
    .await;
    // One reminder only, and the expiry is reported.
    assert_eq!(console_messages(&client, &server, &key).await.len(), 2);
    let types = event_types(db).await;
    assert_eq!(
        types.last().map(String::as_str),
        Some("response.expired"),
        "{types:?}"
    );
    server.stop().await;
}

/// The quick flow with a reminder `after` its question and an expiry, on a server whose
/// `[dispatch]` is `dispatch` and whose clock is `clock`: the customer's survey opened and its
/// question sent. Returns the server, a client, an API key, the invitation and the flows' folder.
async fn a_survey_with_a_reminder(
    db: &TestDb,
    (after, expire_after): (&str, &str),
    dispatch: &str,
    clock: &hearback::time::Clock,
) -> (TestServer, Client, String, Value, tempfile::TempDir) {
    let flow = quick_flow(&format!(
        "  reminder:\n    after: {after}\n    text:\n      fr: \"Petit rappel : de 0 à 10 ?\"\n      en: \"A reminder: 0 to 10?\"\n  expire_after: {expire_after}"
    ));
    let (config, flows) = scheduled_config(db, dispatch, &flow);
    let server = TestServer::start_with_clock(config, db.storage.clone(), clock.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let mut body = delivery_invitation("order-reminded");
    body["flow"] = json!("quick");
    let (status, invitation) = invite(&client, &server, &key, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    sent_to_customer(&client, &server, &key, 1).await;
    (server, client, key, invitation, flows)
}

/// A survey whose reminder (an hour after its question) is held by the per-number daily cap
/// of one text until the next day: the server's clock reads 10:00 in Paris, tomorrow, when the
/// survey opens, and 11:01 when this returns, the reminder queued and held.
struct HeldReminder {
    server: TestServer,
    client: Client,
    key: String,
    clock: hearback::time::Clock,
    invitation: Value,
    _flows: tempfile::TempDir,
}

async fn a_held_reminder(db: &TestDb, expire_after: &str) -> HeldReminder {
    use chrono::{Duration as Days, TimeZone};
    use chrono_tz::Europe::Paris;
    let clock = hearback::time::Clock::system();
    let tomorrow = chrono::Utc::now().with_timezone(&Paris).date_naive() + Days::days(1);
    let ten = Paris
        .from_local_datetime(&tomorrow.and_hms_opt(10, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    clock.advance((ten - clock.now().as_datetime()).to_std().unwrap());
    let (server, client, key, invitation, flows) = a_survey_with_a_reminder(
        db,
        ("1h", expire_after),
        "immediate = true\nfrequency_cap_days = 0\ncontact_daily_sms_cap = 1",
        &clock,
    )
    .await;
    clock.advance(Duration::from_secs(61 * 60));
    wait_until("the reminder is queued", || async {
        console_messages(&client, &server, &key).await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = console_messages(&client, &server, &key).await;
    assert!(
        messages[1]["body"]
            .as_str()
            .unwrap()
            .starts_with("Petit rappel"),
        "{messages:?}"
    );
    assert_eq!(messages[1]["status"], "queued", "held: {messages:?}");
    HeldReminder {
        server,
        client,
        key,
        clock,
        invitation,
        _flows: flows,
    }
}

/// The survey's texts on the customer's card, oldest first.
async fn survey_texts(held: &HeldReminder) -> Vec<Value> {
    let card = get_json(
        &held.client,
        held.server
            .url(&format!("/api/v1/contacts/%2B{}", &CUSTOMER[1..])),
        &held.key,
    )
    .await;
    card["conversations"][0]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{card}"))
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .cloned()
        .collect()
}

/// Lets the clock pass midnight, when the daily cap lets the held reminder go, and returns the
/// reminder as it is then recorded.
async fn the_reminder_after_midnight(held: &HeldReminder) -> Value {
    held.clock.advance(Duration::from_secs(14 * 3_600));
    let reminder = || async {
        survey_texts(held)
            .await
            .into_iter()
            .find(|m| m["text"].as_str().unwrap().starts_with("Petit rappel"))
            .unwrap()
    };
    wait_until("the held reminder's job runs again", || async {
        reminder().await["status"] != "queued"
    })
    .await;
    reminder().await
}

/// The customer answers while the reminder is held: the reminder is never sent, and the
/// survey goes on.
async fn a_held_reminder_is_not_sent_once_the_customer_has_answered(db: &TestDb) {
    let held = a_held_reminder(db, "72h").await;
    reply(&held.client, &held.server, "held-1", "9").await;
    wait_until("the answer's next question goes out", || async {
        let texts = survey_texts(&held).await;
        texts
            .iter()
            .any(|m| m["text"].as_str().unwrap().starts_with("Merci") && m["status"] == "sent")
    })
    .await;
    let reminder = the_reminder_after_midnight(&held).await;
    assert_eq!(reminder["status"], "failed_permanent", "{reminder}");
    assert_eq!(reminder["error_code"], "superseded", "{reminder}");
    let sent = console_messages(&held.client, &held.server, &held.key).await;
    assert!(
        sent.iter()
            .all(|m| !m["body"].as_str().unwrap().starts_with("Petit rappel")
                || m["status"] != "sent"),
        "{sent:?}"
    );
    // The survey is untouched: still open on its next question, its invitation sent.
    let conversation = held.invitation["conversation_id"].as_str().unwrap();
    let status = survey_status(db, conversation).await;
    assert_eq!(status, "open");
    let id = held.invitation["id"].as_str().unwrap();
    let invitation = get_json(
        &held.client,
        held.server.url(&format!("/api/v1/invitations/{id}")),
        &held.key,
    )
    .await;
    assert_eq!(invitation["status"], "sent", "{invitation}");
    held.server.stop().await;
}

/// The survey expires (three hours on) while the reminder is held: the reminder is never sent.
async fn a_held_reminder_is_not_sent_once_the_survey_has_closed(db: &TestDb) {
    let held = a_held_reminder(db, "3h").await;
    let conversation = held.invitation["conversation_id"].as_str().unwrap();
    held.clock.advance(Duration::from_secs(2 * 3_600));
    wait_until("the survey expires", || async {
        db.storage
            .conversation_status(conversation)
            .await
            .unwrap()
            .is_some_and(|(status, _)| status == "expired")
    })
    .await;
    let reminder = the_reminder_after_midnight(&held).await;
    assert_eq!(reminder["status"], "failed_permanent", "{reminder}");
    assert_eq!(reminder["error_code"], "superseded", "{reminder}");
    held.server.stop().await;
}

async fn a_customer_surveyed_recently_is_not_surveyed_again(db: &TestDb) {
    // The default cap: one survey per 30 days, across flows.
    let (config, _flows) = scheduled_config(db, "immediate = true", &quick_flow(""));
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let mut first = delivery_invitation("order-1");
    first["flow"] = json!("quick");
    let (status, first) = invite(&client, &server, &key, &first).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    sent_to_customer(&client, &server, &key, 1).await;
    answer_to_the_end(db, (&client, &server), &first, "in").await;
    // Another event in the customer's life, through another flow: within the cap.
    let mut second = delivery_invitation("order-2");
    second["flow"] = json!("other");
    let (status, declined) = invite(&client, &server, &key, &second).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{declined}");
    assert_eq!(declined["status"], "declined", "{declined}");
    assert_eq!(declined["status_reason"], "frequency_cap");
    assert!(declined["conversation_id"].is_null());
    let sent = console_messages(&client, &server, &key).await.len();
    server.stop().await;

    // With the cap off, the same customer is surveyed again.
    let (config, _flows) = scheduled_config(
        db,
        "immediate = true\nfrequency_cap_days = 0",
        &quick_flow(""),
    );
    let server = TestServer::start(config, db.second_pool().await).await;
    let mut third = delivery_invitation("order-3");
    third["flow"] = json!("other");
    let (status, accepted) = invite(&client, &server, &key, &third).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["status"], "scheduled", "{accepted}");
    assert!(console_messages(&client, &server, &key).await.len() > sent);
    server.stop().await;
}

/// PostgreSQL: an event that another request records after a batch read the events seen before,
/// and before it writes its own, is answered as that request's invitation and written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_recorded_by_another_request_meanwhile_is_answered_as_that_ones_invitation() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let now = hearback::time::Timestamp::now();
    let tomorrow = now + Duration::from_secs(86_400);
    // The other request: its contact and invitation for the same event, not committed yet.
    let mut other = crate::support::HeldTransaction::begin(&db.url).await;
    sqlx::query(
        "INSERT INTO contacts (id, phone, created_at, updated_at) VALUES ('k-other', $1, $2, $2)",
    )
    .bind(CUSTOMER)
    .bind(now)
    .execute(&mut *other.tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO invitations (id, source, event_id, payload_hash, flow_id, contact_id, channel, \
         variables, status, send_at, created_at, updated_at) \
         VALUES ('i-other', 'test', 'order-1', $1, 'delivery', 'k-other', 'console', '{}', \
         'scheduled', $2, $3, $3)",
    )
    .bind([0_u8; 32].as_slice())
    .bind(tomorrow)
    .bind(now)
    .execute(&mut *other.tx)
    .await
    .unwrap();

    let storage = db.storage.clone();
    let batch = tokio::spawn(async move {
        storage
            .start_invitation(&planned_invitation("order-1", now, tomorrow))
            .await
    });
    // The batch has read the events seen before (none) and waits for the other request's
    // contact row.
    other
        .wait_until_blocking("the batch waits for the other request")
        .await;
    other.tx.commit().await.unwrap();

    match batch.await.unwrap().unwrap() {
        hearback::storage::InvitationOutcome::Existing(record) => {
            assert_eq!(record.id, "i-other");
            assert_eq!(record.status, "scheduled");
        }
        created => panic!("the event was recorded twice: {created:?}"),
    }
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM invitations), (SELECT count(*) FROM contacts), \
         (SELECT count(*) FROM jobs)",
    )
    .fetch_one(&other.pool)
    .await
    .unwrap();
    assert_eq!(counts, (1, 1, 0), "invitations, contacts, jobs");
    other.pool.close().await;
    db.cleanup().await;
}

/// An invitation of the delivery flow for [`CUSTOMER`] from source `test`, its first question due
/// at `send_at` (later than `now`: left to its opening job).
pub(crate) fn planned_invitation(
    event_id: &str,
    now: hearback::time::Timestamp,
    send_at: hearback::time::Timestamp,
) -> hearback::storage::NewInvitation {
    hearback::storage::NewInvitation {
        source: "test".into(),
        event_id: event_id.into(),
        payload_hash: [0; 32],
        flow_id: "delivery".into(),
        phone: Phone::parse(CUSTOMER, None).unwrap(),
        country: Some("FR".into()),
        locale: None,
        unit_id: None,
        variables: json!({"first_name": "Ana", "store": "Lyon 2", "order_date": "12/11"}),
        channel: "console".into(),
        sender: "+33600000000".into(),
        opening: None,
        send_max_attempts: 3,
        send_at,
        expires_at: send_at + Duration::from_secs(86_400),
        remind_at: None,
        surveyed_within: None,
        quota: None,
        now,
    }
}

/// PostgreSQL: a customer who opts out while their survey is being opened (the opt-out holds the
/// contact's row until it commits) is not surveyed: the opening locks the contact before it
/// reads whether the number may be texted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_committed_while_a_survey_opens_declines_it() {
    use hearback::storage::{OpenPlan, Opening};
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let now = hearback::time::Timestamp::now();
    let (later, expires) = (
        now + Duration::from_secs(3_600),
        now + Duration::from_secs(4 * 86_400),
    );
    let invitation = store_invitation(
        &db,
        (CUSTOMER, "order-1"),
        ("console", "console"),
        (now, later),
        expires,
    )
    .await;
    // The opt-out, not committed yet.
    let mut opt_out = crate::support::HeldTransaction::begin(&db.url).await;
    sqlx::query("UPDATE contacts SET opted_out_at = $2 WHERE phone = $1")
        .bind(CUSTOMER)
        .bind(now)
        .execute(&mut *opt_out.tx)
        .await
        .unwrap();

    let storage = db.storage.clone();
    let opening = tokio::spawn(async move {
        let flows =
            hearback::flow::load_paths(&[concat!(env!("CARGO_MANIFEST_DIR"), "/flows").into()])
                .flows;
        let plan = OpenPlan {
            invitation_id: invitation,
            sender: "console".into(),
            country: Some("FR".into()),
            send_at: later,
            expires_at: expires,
            remind_at: None,
        };
        storage
            .open_invitations(&[plan], 3, later, |invitation, conversation| {
                hearback::jobs::open::opening(&flows, invitation, conversation, later)
            })
            .await
    });
    opt_out
        .wait_until_blocking("the opening waits for the opt-out")
        .await;
    opt_out.tx.commit().await.unwrap();

    assert_eq!(
        opening.await.unwrap().unwrap(),
        vec![Opening::Declined("opted_out")]
    );
    assert!(customer_messages(&db).await.is_empty(), "nothing to send");
    opt_out.pool.close().await;
    db.cleanup().await;
}

/// A first question that goes out late (here after a provider outage of 19 hours) moves its
/// reminder and its expiry with it: each comes its flow's delay after the question went out,
/// not after the survey opened.
async fn a_first_question_that_goes_out_late_moves_its_reminder_and_expiry_with_it(db: &TestDb) {
    let (api_base, api) = start_twilio_stand_in().await;
    api.answer_with(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "code": 20503, "message": "Service Unavailable", "status": 503 }),
    );
    let clock = hearback::time::Clock::system();
    let server = TestServer::start_with_clock(
        config(db, &twilio_channel(&api_base, "")),
        db.storage.clone(),
        clock.clone(),
    )
    .await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let (status, invitation) =
        invite(&client, &server, &key, &delivery_invitation("order-late")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    let conversation = invitation["conversation_id"].as_str().unwrap().to_string();
    let conversation_status = || survey_status(db, &conversation);
    let sent = || api.sent.lock().unwrap().len();
    let hours = |n: u64| Duration::from_secs(n * 3_600);
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    wait_until("the provider is tried", || async { api.calls() >= 1 }).await;

    // The outage ends 19 hours on: the question goes out then.
    clock.advance(hours(19));
    *api.error.lock().unwrap() = None;
    wait_until("the first question goes out", || async { sent() == 1 }).await;
    // The delivery flow reminds after 24 hours: 25 hours after the opening is too early.
    clock.advance(hours(6));
    settle().await;
    assert_eq!(sent(), 1, "no reminder 6 hours after the question");
    clock.advance(hours(19));
    wait_until("the reminder, 25 hours after the question", || async {
        sent() == 2
    })
    .await;
    // It expires 72 hours after the question: 80 hours after the opening is too early.
    clock.advance(hours(36));
    settle().await;
    assert_eq!(conversation_status().await, "open");
    clock.advance(hours(12));
    wait_until("the conversation expires", || async {
        conversation_status().await == "expired"
    })
    .await;
    server.stop().await;
}

/// A survey planned for later whose opening job's worker died on every attempt: its invitation
/// fails, with `retries_exhausted`, and the company hears of it, instead of it staying
/// scheduled for ever.
async fn a_survey_whose_opening_runs_out_of_attempts_fails_and_is_reported(db: &TestDb) {
    let PlannedSurvey {
        server,
        client,
        key,
        clock,
        planned,
        _flows,
    } = a_survey_planned_in_two_hours(db, "order-unopened").await;
    let id = planned["id"].as_str().unwrap().to_string();
    let send_at: hearback::time::Timestamp = hearback::time::Timestamp::from_datetime(
        planned["send_at"].as_str().unwrap().parse().unwrap(),
    );

    // At its time, a worker elsewhere claims it, and dies, as many times as it may be tried.
    let job = db
        .storage
        .job_by_key(&format!("{}:{id}", hearback::storage::OPEN_JOB))
        .await
        .unwrap()
        .unwrap();
    for attempt in 0..job.max_attempts {
        let at = send_at + Duration::from_millis(10 * u64::from(attempt));
        let claimed = db
            .storage
            .claim_jobs(
                "dead-worker",
                &[hearback::storage::OPEN_JOB],
                1,
                Duration::from_millis(1),
                at,
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "attempt {}", attempt + 1);
    }
    let until_due = (send_at.as_datetime() - clock.now().as_datetime())
        .to_std()
        .unwrap_or_default();
    clock.advance(until_due + Duration::from_secs(60));
    wait_until("the invitation fails", || async {
        db.storage.invitation(&id).await.unwrap().unwrap().status == "failed"
    })
    .await;
    let invitation = db.storage.invitation(&id).await.unwrap().unwrap();
    assert_eq!(
        invitation.status_reason.as_deref(),
        Some("retries_exhausted")
    );
    assert!(
        event_types(db)
            .await
            .contains(&"invitation.failed".to_string())
    );
    assert!(console_messages(&client, &server, &key).await.is_empty());
    server.stop().await;
}

/// A customer erased while a text to them is queued, its send job already running (erasure
/// leaves a running job alone): the job finds the text failed, and cannot mark it for sending.
async fn a_text_queued_for_a_customer_erased_meanwhile_is_never_sent(db: &TestDb) {
    stored_invitation(db, "order-erased", "twilio", TWILIO_NUMBER).await;
    let queued = customer_messages(db).await;
    assert_eq!(queued[0].status, "queued");
    let now = hearback::time::Timestamp::now();
    let storage = db
        .storage
        .clone()
        .with_privacy_key(hearback::privacy::HashKey::new(
            crate::support::TEST_HASH_KEY,
        ));
    storage
        .erase_contact(
            &Phone::parse(CUSTOMER, None).unwrap(),
            &hearback::storage::Actor::Cli,
            now,
        )
        .await
        .unwrap();
    assert!(!db.storage.mark_sending(&queued[0].id, now).await.unwrap());
    let message = db
        .storage
        .outgoing_message(&queued[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.status, "failed_permanent");
}
