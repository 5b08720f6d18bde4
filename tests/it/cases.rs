//! Closing the loop: a detractor's score raises an alert, a case opens, its notice is e-mailed
//! (to a real SMTP server in the test), an agent texts the customer from the case, the customer's
//! text lands in the thread, the agent resolves, and the recovery question's answer closes the
//! case — with every event in order, on both databases.

use crate::conversations::{
    CUSTOMER, delivery_invitation, get_json, invite, reply, sent_to_customer, wait_until,
};
use crate::support::{SmtpSink, TestDb, TestServer, api_key};
use hearback::config::Config;
use hearback::storage::{Actor, NewApiKey, NewUnit, NewUser};
use hearback::time::Timestamp;
use hearback::units::UnitCode;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const SHIPPED_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts.yaml");

fn config(db: &TestDb, smtp: &SmtpSink, alerts: &str) -> Config {
    config_with(db, smtp, alerts, "")
}

/// [`config`] with more `[dispatch]` settings.
fn config_with(db: &TestDb, smtp: &SmtpSink, alerts: &str, dispatch: &str) -> Config {
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    db.config_from_toml(&format!(
        "[flows]\ndir = \"{flows}\"\nalerts = \"{alerts}\"\n\n\
         [jobs]\npoll_interval_ms = 20\nbackoff_base_ms = 20\n\n\
         [dispatch]\nimmediate = true\nfrequency_cap_days = 0\n{dispatch}\n\n\
         [email]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"hearback <alerts@example.com>\"\n\n\
         [channels.console]\nprovider = \"console\"\n",
        smtp.port
    ))
}

/// RHONE (a region, its manager) → LYON-2 (a store, its agent); PARIS-1 (another store, its agent).
struct Organisation {
    agent_key: String,
    other_agent_key: String,
}

async fn organisation(db: &TestDb) -> Organisation {
    let now = Timestamp::now();
    let unit = |code: &str, parent: Option<&str>| NewUnit {
        code: UnitCode::parse(code).unwrap(),
        name: code.to_lowercase(),
        parent: parent.map(|p| UnitCode::parse(p).unwrap()),
    };
    db.storage
        .create_units(
            &[
                unit("RHONE", None),
                unit("LYON-2", Some("RHONE")),
                unit("PARIS-1", None),
            ],
            &Actor::Cli,
            now,
        )
        .await
        .unwrap();
    let mut keys = Vec::new();
    for (email, role, unit) in [
        ("manager@rhone.example", "manager", "RHONE"),
        ("agent@lyon2.example", "agent", "LYON-2"),
        ("agent@paris1.example", "agent", "PARIS-1"),
    ] {
        let user = db
            .storage
            .create_user(
                &NewUser {
                    email: email.into(),
                    name: None,
                    role: role.into(),
                    unit_id: db.storage.unit_id(unit).await.unwrap(),
                    password_hash: None,
                },
                now,
            )
            .await
            .unwrap();
        let token = hearback::auth::api_key::ApiKeyToken::generate();
        db.storage
            .create_api_key(
                &NewApiKey {
                    id: token.id().into(),
                    name: format!("user:{email}"),
                    secret_hash: token.secret_hash(),
                    user_id: Some(user.id),
                },
                &Actor::Cli,
                now,
            )
            .await
            .unwrap();
        keys.push(token.reveal());
    }
    Organisation {
        agent_key: keys[1].clone(),
        other_agent_key: keys[2].clone(),
    }
}

fn lyon_invitation(event_id: &str) -> Value {
    let mut invitation = delivery_invitation(event_id);
    invitation["unit"] = json!("LYON-2");
    invitation
}

async fn post(client: &Client, url: String, key: &str, body: Value) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn event_types(db: &TestDb) -> Vec<String> {
    db.storage
        .outbox_after(0, 500)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

/// Whether `wanted` appears in `all` in this order (other events may come between).
fn in_order(all: &[String], wanted: &[&str]) -> bool {
    let mut rest = all.iter();
    wanted.iter().all(|w| rest.any(|t| t == w))
}

async fn the_whole_loop_from_a_detractor_score_to_a_recovered_customer(db: &TestDb) {
    let smtp = SmtpSink::start();
    let server = TestServer::start(config(db, &smtp, SHIPPED_RULES), db.storage.clone()).await;
    let client = Client::new();
    let crm = api_key(&db.storage, "crm").await;
    let people = organisation(db).await;

    let (status, invitation) = invite(&client, &server, &crm, &lyon_invitation("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    sent_to_customer(&client, &server, &crm, 1).await;

    // The detractor's score: the alert, the case and its e-mail.
    reply(&client, &server, "in-1", "3 livreur en retard").await;
    let mails = smtp.wait_for(1).await;
    let notice = &mails[0];
    assert_eq!(notice.from, "alerts@example.com");
    let mut to = notice.to.clone();
    to.sort();
    assert_eq!(
        to,
        ["agent@lyon2.example", "qualite@example.com"],
        "the store's agent and the rule's address, not the region's manager"
    );
    assert!(
        notice.data.contains("multipart/alternative"),
        "{}",
        notice.data
    );
    assert!(notice.data.contains("text/plain") && notice.data.contains("text/html"));
    assert!(
        notice.data.contains("high case, LYON-2: detractor"),
        "{}",
        notice.data
    );

    let cases = get_json(&client, server.url("/api/v1/cases"), &people.agent_key).await;
    let case = &cases["cases"][0];
    assert_eq!(cases["cases"].as_array().unwrap().len(), 1, "{cases}");
    assert_eq!(case["status"], "open");
    assert_eq!(case["priority"], "high");
    assert_eq!(case["rule"], "detractor");
    assert_eq!(case["unit"], "LYON-2");
    assert_eq!(case["phone"], CUSTOMER);
    assert_eq!(case["conversation_id"], invitation["conversation_id"]);
    let id = case["id"].as_str().unwrap().to_string();
    let case_url = |path: &str| server.url(&format!("/api/v1/cases/{id}{path}"));

    // Another store's agent sees nothing of it.
    let theirs = get_json(
        &client,
        server.url("/api/v1/cases"),
        &people.other_agent_key,
    )
    .await;
    assert_eq!(theirs["cases"], json!([]), "{theirs}");
    let response = client
        .get(case_url(""))
        .bearer_auth(&people.other_agent_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // The agent texts the customer: the survey that raised the case ends (its answers kept),
    // and the text goes out from the number the customer wrote to, at once (they just wrote).
    let (status, accepted) = post(
        &client,
        case_url("/messages"),
        &people.agent_key,
        json!({ "text": "Bonjour, ici Léa de Lyon 2. Que s'est-il passé avec le livreur ?" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["waits_for_window"], false);
    let sent = sent_to_customer(&client, &server, &crm, 3).await;
    assert!(
        sent[2]["body"]
            .as_str()
            .unwrap()
            .starts_with("Bonjour, ici Léa"),
        "{sent:?}"
    );
    let conversation = invitation["conversation_id"].as_str().unwrap();
    let survey = crate::conversations::survey_status(db, conversation).await;
    assert_eq!(survey, "expired");

    // The customer's answer lands in the thread, not in a survey.
    reply(
        &client,
        &server,
        "in-2",
        "Il a jeté le colis par-dessus le portail",
    )
    .await;
    wait_until("the customer's text is in the thread", || async {
        let detail = get_json(&client, case_url(""), &people.agent_key).await;
        detail["thread"].as_array().is_some_and(|t| {
            t.iter()
                .any(|m| m["text"] == "Il a jeté le colis par-dessus le portail")
        })
    })
    .await;
    let detail = get_json(&client, case_url(""), &people.agent_key).await;
    assert_eq!(detail["status"], "in_progress", "writing took the case");

    // Resolved: the recovery question goes out; the customer's OUI closes the case, recovered.
    let (status, resolved) = post(
        &client,
        case_url("/resolve"),
        &people.agent_key,
        json!({ "outcome": "solved" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["follow_up"], "asked");
    let sent = sent_to_customer(&client, &server, &crm, 4).await;
    assert_eq!(
        sent[3]["body"],
        "Avons-nous réglé votre problème ? Répondez OUI ou NON."
    );
    reply(&client, &server, "in-3", "OUI merci").await;
    wait_until("the case is closed", || async {
        get_json(&client, case_url(""), &people.agent_key).await["status"] == "closed"
    })
    .await;
    let detail = get_json(&client, case_url(""), &people.agent_key).await;
    assert_eq!(detail["follow_up"], "yes");
    assert_eq!(detail["outcome"], "solved");
    let history: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "opened",
            "message_out",
            "message_in",
            "resolved",
            "message_out",
            "message_in",
            "follow_up",
            "closed"
        ]
    );
    let thread: Vec<(&str, &str)> = detail["thread"]
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
    assert_eq!(thread.len(), 5, "{thread:?}");
    assert_eq!(thread[0], ("inbound", "3 livreur en retard"));
    assert_eq!(thread[4], ("inbound", "OUI merci"));

    let types = event_types(db).await;
    assert!(
        in_order(
            &types,
            &[
                "invitation.sent",
                "response.answered",
                "alert.raised",
                "case.opened",
                "response.expired",
                "case.message",
                "case.message",
                "case.resolved",
                "case.message",
                "case.closed",
            ]
        ),
        "{types:?}"
    );
    assert_eq!(types.iter().filter(|t| *t == "alert.raised").count(), 1);
    server.stop().await;
}

async fn a_case_nobody_takes_in_time_is_escalated_to_the_parent_unit_s_managers(db: &TestDb) {
    let smtp = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: detractor\n    when:\n      - answer: nps <= 6\n    case:\n      priority: urgent\n      sla: 1s\n",
    )
    .unwrap();
    let server = TestServer::start(
        config(db, &smtp, rules.to_str().unwrap()),
        db.storage.clone(),
    )
    .await;
    let client = Client::new();
    let crm = api_key(&db.storage, "crm").await;
    let people = organisation(db).await;
    invite(&client, &server, &crm, &lyon_invitation("order-2")).await;
    sent_to_customer(&client, &server, &crm, 1).await;
    reply(&client, &server, "in-1", "2").await;

    let mails = smtp.wait_for(2).await;
    let escalation = mails
        .iter()
        .find(|m| m.data.contains("Escalated"))
        .unwrap_or_else(|| panic!("{mails:?}"));
    assert_eq!(escalation.to, ["manager@rhone.example"]);
    let overdue = get_json(
        &client,
        server.url("/api/v1/cases?overdue=true"),
        &people.agent_key,
    )
    .await;
    assert_eq!(overdue["cases"].as_array().unwrap().len(), 1, "{overdue}");
    assert_eq!(overdue["cases"][0]["overdue"], true);
    assert!(overdue["cases"][0]["escalated_at"].is_string());
    let types = event_types(db).await;
    assert!(
        in_order(&types, &["case.opened", "case.escalated"]),
        "{types:?}"
    );
    assert_eq!(types.iter().filter(|t| *t == "case.escalated").count(), 1);

    // Taken, it is overdue no more.
    let (status, taken) = post(
        &client,
        server.url(&format!(
            "/api/v1/cases/{}/assign",
            overdue["cases"][0]["id"].as_str().unwrap()
        )),
        &people.agent_key,
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{taken}");
    assert_eq!(taken["status"], "in_progress");
    assert_eq!(taken["assignee"], "agent@lyon2.example");
    let overdue = get_json(
        &client,
        server.url("/api/v1/cases?overdue=true"),
        &people.agent_key,
    )
    .await;
    assert_eq!(overdue["cases"], json!([]));
    server.stop().await;
}

async fn a_customer_with_a_case_is_not_surveyed_again_until_it_is_closed(db: &TestDb) {
    let smtp = SmtpSink::start();
    let server = TestServer::start(config(db, &smtp, SHIPPED_RULES), db.storage.clone()).await;
    let client = Client::new();
    let crm = api_key(&db.storage, "crm").await;
    organisation(db).await;
    invite(&client, &server, &crm, &lyon_invitation("order-3")).await;
    sent_to_customer(&client, &server, &crm, 1).await;
    reply(&client, &server, "in-1", "5 je vais voir un avocat").await;
    wait_until("a case is open", || async {
        get_json(&client, server.url("/api/v1/cases"), &crm).await["cases"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;
    let cases = get_json(&client, server.url("/api/v1/cases"), &crm).await;
    assert_eq!(cases["cases"][0]["rule"], "legal-threat", "{cases}");
    assert_eq!(cases["cases"][0]["priority"], "urgent");

    let (status, second) = invite(&client, &server, &crm, &lyon_invitation("order-4")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second["status"], "declined");
    assert_eq!(second["status_reason"], "open_case");
    server.stop().await;
}

async fn bad_case_requests_get_a_precise_error_and_change_nothing(db: &TestDb) {
    let smtp = SmtpSink::start();
    let server = TestServer::start(config(db, &smtp, SHIPPED_RULES), db.storage.clone()).await;
    let client = Client::new();
    let crm = api_key(&db.storage, "crm").await;
    let people = organisation(db).await;
    let (_, invitation) = invite(&client, &server, &crm, &lyon_invitation("order-5")).await;
    sent_to_customer(&client, &server, &crm, 1).await;
    reply(&client, &server, "in-1", "0").await;
    wait_until("a case is open", || async {
        get_json(&client, server.url("/api/v1/cases"), &crm).await["cases"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;
    let cases = get_json(&client, server.url("/api/v1/cases"), &crm).await;
    let id = cases["cases"][0]["id"].as_str().unwrap().to_string();
    let url = |path: &str| server.url(&format!("/api/v1/cases/{id}{path}"));

    let cases_of_table: &[(&str, &str, Value, StatusCode, &str)] = &[
        (
            "/messages",
            "crm",
            json!({ "text": "  " }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "text",
        ),
        (
            "/messages",
            "crm",
            json!({ "text": "x".repeat(1_001) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "text",
        ),
        (
            "/messages",
            "crm",
            json!({ "body": "hi" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            "/resolve",
            "crm",
            json!({ "outcome": "fixed" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "outcome",
        ),
        (
            "/assign",
            "crm",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "user",
        ),
        (
            "/assign",
            "crm",
            json!({ "user": "agent@paris1.example" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "user",
        ),
        (
            "/assign",
            "crm",
            json!({ "user": "nobody@example.com" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "user",
        ),
        (
            "/resolve",
            "other",
            json!({ "outcome": "solved" }),
            StatusCode::NOT_FOUND,
            "",
        ),
    ];
    for (path, who, body, expected, field) in cases_of_table {
        let key = if *who == "crm" {
            &crm
        } else {
            &people.other_agent_key
        };
        let (status, error) = post(&client, url(path), key, body.clone()).await;
        assert_eq!(status, *expected, "{path} {body}: {error}");
        assert!(error["error"]["code"].is_string(), "{error}");
        if !field.is_empty() {
            assert!(
                error["error"]["details"]["fields"][field].is_string(),
                "{error}"
            );
        }
    }
    let missing = client
        .get(server.url("/api/v1/cases/case_nope"))
        .bearer_auth(&crm)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let bad_filter = client
        .get(server.url("/api/v1/cases?status=pending"))
        .bearer_auth(&crm)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_filter.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Nothing changed: still open, no history but its opening, no text in its thread but the
    // score that opened it, no case event but its opening.
    let detail = get_json(&client, url(""), &crm).await;
    assert_eq!(detail["status"], "open");
    assert_eq!(detail["history"].as_array().unwrap().len(), 1, "{detail}");
    assert_eq!(detail["thread"].as_array().unwrap().len(), 1, "{detail}");
    let types = event_types(db).await;
    let case_events: Vec<&String> = types.iter().filter(|t| t.starts_with("case.")).collect();
    assert_eq!(case_events, ["case.opened"], "{types:?}");

    // Resolved without the recovery question, it closes at once; a closed case takes no text.
    let (status, _) = post(
        &client,
        url("/resolve"),
        &crm,
        json!({ "outcome": "unreachable", "follow_up": false }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = post(
        &client,
        url("/resolve"),
        &crm,
        json!({ "outcome": "solved" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    wait_until("the case is closed", || async {
        get_json(&client, url(""), &crm).await["status"] == "closed"
    })
    .await;
    let (status, closed) = post(
        &client,
        url("/messages"),
        &crm,
        json!({ "text": "Bonjour" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{closed}");
    // Resolving ended the survey that raised the case, once.
    let survey =
        crate::conversations::survey_status(db, invitation["conversation_id"].as_str().unwrap())
            .await;
    assert_eq!(survey, "expired");
    let types = event_types(db).await;
    assert_eq!(
        types.iter().filter(|t| *t == "response.expired").count(),
        1,
        "{types:?}"
    );
    server.stop().await;
}

/// A started server with the shipped rules, its organisation, and a case opened by a score of 3.
struct Opened {
    server: TestServer,
    smtp: SmtpSink,
    client: Client,
    crm: String,
    people: Organisation,
    id: String,
    conversation: String,
}

async fn a_case_opened_by_a_score_of_3(db: &TestDb) -> Opened {
    a_case_opened_by(db, "3").await
}

/// [`a_case_opened_by_a_score_of_3`], opened by `first_reply` instead.
async fn a_case_opened_by(db: &TestDb, first_reply: &str) -> Opened {
    a_case_opened_with(db, SmtpSink::start(), first_reply).await
}

/// [`a_case_opened_by`], its notices e-mailed through `smtp`.
async fn a_case_opened_with(db: &TestDb, smtp: SmtpSink, first_reply: &str) -> Opened {
    let server = TestServer::start(config(db, &smtp, SHIPPED_RULES), db.storage.clone()).await;
    let client = Client::new();
    let crm = api_key(&db.storage, "crm").await;
    let people = organisation(db).await;
    let (_, invitation) = invite(&client, &server, &crm, &lyon_invitation("order-9")).await;
    sent_to_customer(&client, &server, &crm, 1).await;
    reply(&client, &server, "in-score", first_reply).await;
    wait_until("a case is open", || async {
        get_json(&client, server.url("/api/v1/cases"), &crm).await["cases"][0]["id"].is_string()
    })
    .await;
    let cases = get_json(&client, server.url("/api/v1/cases"), &crm).await;
    let id = cases["cases"][0]["id"].as_str().unwrap().to_string();
    Opened {
        server,
        smtp,
        client,
        crm,
        people,
        id,
        conversation: invitation["conversation_id"].as_str().unwrap().to_string(),
    }
}

async fn a_customer_who_texted_stop_receives_no_agent_text(db: &TestDb) {
    let o = a_case_opened_by_a_score_of_3(db).await;
    sent_to_customer(&o.client, &o.server, &o.crm, 2).await;
    reply(&o.client, &o.server, "in-stop", "STOP").await;
    let confirmed = sent_to_customer(&o.client, &o.server, &o.crm, 3).await;
    let url = o.server.url(&format!("/api/v1/cases/{}", o.id));
    let (status, accepted) = post(
        &o.client,
        format!("{url}/messages"),
        &o.people.agent_key,
        json!({ "text": "Bonjour, puis-je vous aider ?" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    wait_until("the agent's text is given up", || async {
        let detail = get_json(&o.client, url.clone(), &o.crm).await;
        detail["thread"].as_array().is_some_and(|t| {
            t.iter()
                .any(|m| m["direction"] == "outbound" && m["status"] == "failed_permanent")
        })
    })
    .await;
    let all = crate::conversations::console_messages(&o.client, &o.server, &o.crm).await;
    let sent: Vec<&Value> = all.iter().filter(|m| m["status"] == "sent").collect();
    assert_eq!(
        sent.len(),
        confirmed.len(),
        "nothing more reached the number: {all:?}"
    );
    o.server.stop().await;
}

/// Resolving a case ends the survey that raised it, whose later answers could not reach a
/// resolved case; the customer's "non" then answers the recovery question and closes the case.
async fn resolving_a_case_ends_its_survey_and_the_recovery_answer_closes_it(db: &TestDb) {
    let o = a_case_opened_by_a_score_of_3(db).await;
    let url = o.server.url(&format!("/api/v1/cases/{}", o.id));
    let (status, resolved) = post(
        &o.client,
        format!("{url}/resolve"),
        &o.crm,
        json!({ "outcome": "solved" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    // Resolving twice is refused, and changes nothing.
    let (status, _) = post(
        &o.client,
        format!("{url}/resolve"),
        &o.crm,
        json!({ "outcome": "not_solved" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let survey = crate::conversations::survey_status(db, &o.conversation).await;
    assert_eq!(survey, "expired", "resolving ended the survey");
    // The survey's next question, then the recovery question: read as its answer once it is out.
    sent_to_customer(&o.client, &o.server, &o.crm, 3).await;
    reply(&o.client, &o.server, "in-yes", "non").await;
    wait_until("the case is closed", || async {
        get_json(&o.client, url.clone(), &o.crm).await["status"] == "closed"
    })
    .await;
    let detail = get_json(&o.client, url.clone(), &o.crm).await;
    assert_eq!(detail["follow_up"], "no");
    assert_eq!(detail["outcome"], "solved", "the first resolution stands");
    let types = event_types(db).await;
    assert_eq!(
        types.iter().filter(|t| *t == "response.expired").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "case.resolved").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "case.closed").count(),
        1,
        "{types:?}"
    );
    o.server.stop().await;
}

/// The recovery question is held until tomorrow by the per-number daily cap (the survey's
/// question was the customer's one text today). A "non" meanwhile goes to the case's thread,
/// not as the answer to a question the customer has not received; and once the case has
/// closed, the question is never sent.
async fn a_held_recovery_question_is_not_answered_before_it_goes_nor_sent_once_the_case_is_closed(
    db: &TestDb,
) {
    let smtp = SmtpSink::start();
    let clock = hearback::time::Clock::system();
    let config = config_with(db, &smtp, SHIPPED_RULES, "contact_daily_sms_cap = 1");
    let server = TestServer::start_with_clock(config, db.storage.clone(), clock.clone()).await;
    let client = Client::new();
    let crm = api_key(&db.storage, "crm").await;
    let people = organisation(db).await;
    invite(&client, &server, &crm, &lyon_invitation("order-held")).await;
    sent_to_customer(&client, &server, &crm, 1).await;
    reply(&client, &server, "in-score", "3").await;
    sent_to_customer(&client, &server, &crm, 2).await;
    wait_until("a case is open", || async {
        get_json(&client, server.url("/api/v1/cases"), &crm).await["cases"][0]["id"].is_string()
    })
    .await;
    let cases = get_json(&client, server.url("/api/v1/cases"), &crm).await;
    let id = cases["cases"][0]["id"].as_str().unwrap().to_string();
    let url = server.url(&format!("/api/v1/cases/{id}"));
    let (status, resolved) = post(
        &client,
        format!("{url}/resolve"),
        &crm,
        json!({ "outcome": "solved" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    let question = || async {
        let detail = get_json(&client, url.clone(), &crm).await;
        detail["thread"]
            .as_array()
            .unwrap_or_else(|| panic!("{detail}"))
            .iter()
            .find(|m| {
                m["direction"] == "outbound"
                    && m["text"].as_str().unwrap().starts_with("Avons-nous")
            })
            .cloned()
            .unwrap_or_else(|| panic!("no recovery question: {detail}"))
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(question().await["status"], "queued", "held");
    // An agent's text meanwhile goes out (the customer wrote a moment ago): it is not the
    // question.
    let (status, _) = post(
        &client,
        format!("{url}/messages"),
        &people.agent_key,
        json!({ "text": "PS : le bon d'achat est en route." }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_until("the agent's text goes out", || async {
        let detail = get_json(&client, url.clone(), &crm).await;
        detail["thread"].as_array().is_some_and(|t| {
            t.iter()
                .any(|m| m["text"].as_str().unwrap().starts_with("PS") && m["status"] == "sent")
        })
    })
    .await;

    reply(&client, &server, "in-non", "non").await;
    wait_until("the reply reaches the case's thread", || async {
        let detail = get_json(&client, url.clone(), &crm).await;
        detail["thread"].as_array().is_some_and(|t| {
            t.iter()
                .any(|m| m["direction"] == "inbound" && m["text"] == "non")
        })
    })
    .await;
    let detail = get_json(&client, url.clone(), &crm).await;
    assert_eq!(detail["status"], "resolved", "{detail}");
    assert_eq!(detail["follow_up"], "asked", "{detail}");

    assert!(
        db.storage
            .close_resolved_case(&id, clock.now())
            .await
            .unwrap()
    );
    clock.advance(std::time::Duration::from_secs(26 * 3_600));
    wait_until("the held question's job runs again", || async {
        question().await["status"] != "queued"
    })
    .await;
    let question = question().await;
    assert_eq!(question["status"], "failed_permanent", "{question}");
    assert_eq!(question["error_code"], "superseded", "{question}");
    server.stop().await;
}

async fn a_graver_alert_raises_the_open_case_and_is_e_mailed(db: &TestDb) {
    let o = a_case_opened_by_a_score_of_3(db).await;
    o.smtp.wait_for(1).await;
    reply(&o.client, &o.server, "in-why", "Je vais prendre un avocat").await;
    let url = o.server.url(&format!("/api/v1/cases/{}", o.id));
    wait_until("the case is urgent", || async {
        get_json(&o.client, url.clone(), &o.crm).await["priority"] == "urgent"
    })
    .await;
    let mails = o.smtp.wait_for(2).await;
    assert!(
        mails[1].data.contains("urgent case, LYON-2: detractor"),
        "{}",
        mails[1].data
    );
    let cases = get_json(&o.client, o.server.url("/api/v1/cases"), &o.crm).await;
    assert_eq!(
        cases["cases"].as_array().unwrap().len(),
        1,
        "one case per customer"
    );
    let types = event_types(db).await;
    assert_eq!(
        types.iter().filter(|t| *t == "alert.raised").count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "case.opened").count(),
        1,
        "{types:?}"
    );
    o.server.stop().await;
}

/// One answer that fires two rules (a legal threat, urgent, and a detractor's score) opens one
/// case, and its notice goes to the addresses both rules name.
async fn a_case_opened_by_two_rules_tells_the_addresses_of_both(db: &TestDb) {
    let o = a_case_opened_by(db, "2 je vais voir un avocat").await;
    let mails = o.smtp.wait_for(1).await;
    for address in ["juridique@example.com", "qualite@example.com"] {
        assert!(
            mails[0].to.iter().any(|to| to.contains(address)),
            "{address} in {:?}",
            mails[0].to
        );
    }
    let detail = get_json(
        &o.client,
        o.server.url(&format!("/api/v1/cases/{}", o.id)),
        &o.crm,
    )
    .await;
    assert_eq!(detail["priority"], "urgent", "the gravest rule's");
    o.server.stop().await;
}

/// A rule that fires later on a case it does not make graver still tells the addresses it
/// names, and only them: the unit's people know the case already.
async fn a_rule_joining_a_case_tells_the_addresses_it_names(db: &TestDb) {
    // A promoter's score, then a legal threat (urgent) as what they liked most.
    let o = a_case_opened_by(db, "10 mais je vais voir un avocat").await;
    let first = o.smtp.wait_for(1).await;
    assert!(
        first[0]
            .to
            .iter()
            .any(|to| to.contains("juridique@example.com")),
        "{:?}",
        first[0].to
    );
    // The consent question, answered with a complaint: the detractor rule (high).
    sent_to_customer(&o.client, &o.server, &o.crm, 2).await;
    reply(&o.client, &o.server, "in-consent", "non, livreur impoli").await;
    let mails = o.smtp.wait_for(2).await;
    assert_eq!(
        mails[1]
            .to
            .iter()
            .map(|to| to.trim_matches(['<', '>']))
            .collect::<Vec<_>>(),
        ["qualite@example.com"],
        "{:?}",
        mails[1].to
    );
    let detail = get_json(
        &o.client,
        o.server.url(&format!("/api/v1/cases/{}", o.id)),
        &o.crm,
    )
    .await;
    assert_eq!(detail["priority"], "urgent", "not lowered");
    o.server.stop().await;
}

/// A mailbox the SMTP server refuses (an agent who left) does not keep the case's notice from
/// the others it is for.
async fn a_notice_reaches_its_other_recipients_when_one_mailbox_is_refused(db: &TestDb) {
    let smtp = SmtpSink::start_refusing(&["agent@lyon2.example"]);
    let o = a_case_opened_with(db, smtp, "3").await;
    let mails = o.smtp.wait_for(1).await;
    let recipients: Vec<&String> = mails.iter().flat_map(|m| &m.to).collect();
    assert!(
        recipients
            .iter()
            .any(|to| to.contains("qualite@example.com")),
        "{recipients:?}"
    );
    assert!(
        !recipients
            .iter()
            .any(|to| to.contains("agent@lyon2.example")),
        "{recipients:?}"
    );
    o.server.stop().await;
}

/// A survey in English (its flow's first language; the invitation gave no locale): the
/// recovery question goes in English too.
async fn the_recovery_question_goes_in_the_survey_s_language(db: &TestDb) {
    let flows = tempfile::tempdir().unwrap();
    // The shipped flows (the shipped rules name them), the delivery flow in English first.
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/flows")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".yaml") && !name.ends_with(".test.yaml") {
            std::fs::copy(&path, flows.path().join(name)).unwrap();
        }
    }
    let delivery =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flows/delivery.yaml"))
            .unwrap()
            .replace("languages: [fr, en]", "languages: [en, fr]");
    std::fs::write(flows.path().join("delivery.yaml"), delivery).unwrap();
    let smtp = SmtpSink::start();
    let mut config = config(db, &smtp, SHIPPED_RULES);
    config.flows.dir = flows.path().to_path_buf();
    let server = TestServer::start(config, db.storage.clone()).await;
    let client = Client::new();
    let crm = api_key(&db.storage, "crm").await;
    organisation(db).await;
    let mut body = lyon_invitation("order-en");
    body.as_object_mut().unwrap().remove("locale");
    let (status, invitation) = invite(&client, &server, &crm, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    let first = sent_to_customer(&client, &server, &crm, 1).await;
    assert!(
        first[0]["body"].as_str().unwrap().starts_with("Hello"),
        "{first:?}"
    );
    reply(&client, &server, "in-score", "3").await;
    wait_until("a case is open", || async {
        get_json(&client, server.url("/api/v1/cases"), &crm).await["cases"][0]["id"].is_string()
    })
    .await;
    let cases = get_json(&client, server.url("/api/v1/cases"), &crm).await;
    let id = cases["cases"][0]["id"].as_str().unwrap();
    let (status, resolved) = post(
        &client,
        server.url(&format!("/api/v1/cases/{id}/resolve")),
        &crm,
        json!({ "outcome": "solved" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    let sent = sent_to_customer(&client, &server, &crm, 3).await;
    let question = sent.last().unwrap()["body"].as_str().unwrap();
    assert!(question.starts_with("Did we solve"), "{sent:?}");
    server.stop().await;
}

async fn a_user_s_key_reaches_only_the_cases(db: &TestDb) {
    let o = a_case_opened_by_a_score_of_3(db).await;
    for path in [
        "/api/v1/invitations",
        "/api/v1/units",
        "/api/v1/console/messages",
    ] {
        let response = o
            .client
            .get(o.server.url(path))
            .bearer_auth(&o.people.agent_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
    }
    o.server.stop().await;
}

crate::both_backends!(
    the_recovery_question_goes_in_the_survey_s_language,
    a_notice_reaches_its_other_recipients_when_one_mailbox_is_refused,
    a_case_opened_by_two_rules_tells_the_addresses_of_both,
    a_rule_joining_a_case_tells_the_addresses_it_names,
    a_held_recovery_question_is_not_answered_before_it_goes_nor_sent_once_the_case_is_closed,
    a_customer_who_texted_stop_receives_no_agent_text,
    resolving_a_case_ends_its_survey_and_the_recovery_answer_closes_it,
    a_graver_alert_raises_the_open_case_and_is_e_mailed,
    a_user_s_key_reaches_only_the_cases,
    the_whole_loop_from_a_detractor_score_to_a_recovered_customer,
    a_case_nobody_takes_in_time_is_escalated_to_the_parent_unit_s_managers,
    a_customer_with_a_case_is_not_surveyed_again_until_it_is_closed,
    bad_case_requests_get_a_precise_error_and_change_nothing,
);
