//! `GET /api/v1/responses`: surveys answered through the real server, listed as JSON pages with
//! every filter, and exported as CSV and JSON lines, on both databases.

use crate::conversations::{CUSTOMER, answer_to_the_end, config, invite, wait_until};
use crate::support::{TestDb, TestServer, api_key};
use hearback::storage::{Actor, NewUnit};
use hearback::time::Timestamp;
use hearback::units::UnitCode;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const PASSIVE: &str = "+33612345679";
const CALLER: &str = "+33612345680";
const SILENT: &str = "+33612345681";

fn invitation(event_id: &str, flow: &str, phone: &str, unit: Option<&str>) -> Value {
    let variables = match flow {
        "call_centre" => json!({ "first_name": "Léa" }),
        _ => json!({ "first_name": "Ana", "store": "Lyon 2", "order_date": "12/11" }),
    };
    let mut body = json!({
        "event_id": event_id,
        "flow": flow,
        "phone": phone,
        "locale": "fr-FR",
        "variables": variables,
    });
    if let Some(unit) = unit {
        body["unit"] = json!(unit);
    }
    body
}

async fn organisation(db: &TestDb) {
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
            Timestamp::now(),
        )
        .await
        .unwrap();
}

struct Surveyed {
    server: TestServer,
    client: Client,
    key: String,
    /// Between the second survey's start and the third's.
    midway: String,
}

/// Invites and waits for the first question to go out (a survey not sent yet takes no answer).
async fn invite_sent(db: &TestDb, s: (&Client, &TestServer, &str), body: Value) -> Value {
    let (status, invitation) = invite(s.0, s.1, s.2, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    let id = invitation["id"].as_str().unwrap().to_string();
    wait_until("the first question is sent", || async {
        db.storage.invitation(&id).await.unwrap().unwrap().status == "sent"
    })
    .await;
    invitation
}

async fn reply_as(client: &Client, server: &TestServer, from: &str, id: &str, text: &str) {
    let response = client
        .post(server.url("/webhooks/console/inbound"))
        .json(&json!({ "id": id, "from": from, "to": "console", "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{text}");
}

async fn wait_for_status(db: &TestDb, invitation: &Value, wanted: &str) {
    let conversation = invitation["conversation_id"].as_str().unwrap().to_string();
    wait_until(wanted, || async {
        db.storage
            .conversation_status(&conversation)
            .await
            .unwrap()
            .is_some_and(|(status, _)| status == wanted)
    })
    .await;
}

/// Four surveys, in this order: `order-1` (delivery, LYON-2) completed by [`CUSTOMER`];
/// `call-1` (call_centre, PARIS-1) completed with a comment that starts like a formula;
/// `order-2` (delivery, RHONE) expired by a STOP after an answer that is a formula; `order-3`
/// (delivery, no unit) open, unanswered.
async fn four_surveys(db: &TestDb) -> Surveyed {
    organisation(db).await;
    let server = TestServer::start(
        config(db, "[channels.console]\nprovider = \"console\"\n"),
        db.storage.clone(),
    )
    .await;
    let client = Client::new();
    let key = api_key(&db.storage, "crm").await;
    let s = (&client, &server, key.as_str());

    let first = invite_sent(
        db,
        s,
        invitation("order-1", "delivery", CUSTOMER, Some("LYON-2")),
    )
    .await;
    answer_to_the_end(db, (&client, &server), &first, "a").await;

    let call = invite_sent(
        db,
        s,
        invitation("call-1", "call_centre", PASSIVE, Some("PARIS-1")),
    )
    .await;
    reply_as(&client, &server, PASSIVE, "b-0", "4").await;
    reply_as(
        &client,
        &server,
        PASSIVE,
        "b-1",
        "+33 6 12 34 56 78 rappelez-moi",
    )
    .await;
    wait_for_status(db, &call, "completed").await;

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let midway = Timestamp::now().as_datetime().to_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let stopped = invite_sent(
        db,
        s,
        invitation("order-2", "delivery", CALLER, Some("RHONE")),
    )
    .await;
    reply_as(&client, &server, CALLER, "c-0", "7").await;
    reply_as(
        &client,
        &server,
        CALLER,
        "c-1",
        "=HYPERLINK(\"http://evil.example\",\"clic\")",
    )
    .await;
    reply_as(&client, &server, CALLER, "c-2", "STOP").await;
    wait_for_status(db, &stopped, "expired").await;

    invite_sent(db, s, invitation("order-3", "delivery", SILENT, None)).await;
    Surveyed {
        server,
        client,
        key,
        midway,
    }
}

async fn get(s: &Surveyed, query: &str, accept: Option<&str>) -> (StatusCode, String) {
    let mut request = s
        .client
        .get(s.server.url(&format!("/api/v1/responses{query}")))
        .bearer_auth(&s.key);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn page(s: &Surveyed, query: &str) -> Value {
    let (status, body) = get(s, query, None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The event ids of the responses `query` lists.
async fn events(s: &Surveyed, query: &str) -> Vec<String> {
    page(s, query).await["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect()
}

async fn responses_are_listed_with_their_answers_and_every_filter(db: &TestDb) {
    let s = four_surveys(db).await;
    let all = page(&s, "").await;
    assert_eq!(all["next_cursor"], Value::Null, "{all}");
    let responses = all["responses"].as_array().unwrap();
    assert_eq!(
        responses
            .iter()
            .map(|r| r["event_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["order-1", "call-1", "order-2", "order-3"]
    );

    let completed = &responses[0];
    assert_eq!(completed["flow"], "delivery");
    assert_eq!(completed["unit"], "LYON-2");
    assert_eq!(completed["channel"], "console");
    assert_eq!(completed["status"], "completed");
    assert!(completed["closed_at"].is_string(), "{completed}");
    assert!(completed["contact_id"].is_string(), "{completed}");
    assert!(
        !completed.to_string().contains(CUSTOMER),
        "the customer is named by contact id, never by phone: {completed}"
    );
    let answers: Vec<Value> = completed["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert!(a["answered_at"].is_string(), "{a}");
            json!([
                a["question_id"],
                a["kind"],
                a["score"],
                a["choice"],
                a["text"]
            ])
        })
        .collect();
    assert_eq!(
        answers,
        [
            json!(["score", "nps", 8, null, null]),
            json!(["why_passive", "text", null, null, "rien a dire"]),
            json!(["consent", "yesno", null, "yes", null]),
        ]
    );
    assert_eq!(responses[2]["status"], "expired");
    assert_eq!(responses[2]["answers"].as_array().unwrap().len(), 2);
    assert_eq!(responses[3]["status"], "open");
    assert_eq!(responses[3]["unit"], Value::Null);
    assert_eq!(responses[3]["closed_at"], Value::Null);
    assert_eq!(responses[3]["answers"], json!([]));

    assert_eq!(events(&s, "?status=completed").await, ["order-1", "call-1"]);
    assert_eq!(events(&s, "?status=expired").await, ["order-2"]);
    assert_eq!(events(&s, "?status=open").await, ["order-3"]);
    assert_eq!(
        events(&s, "?flow=call_centre").await,
        ["call-1"],
        "one flow"
    );
    assert_eq!(
        events(&s, "?unit=RHONE").await,
        ["order-1", "order-2"],
        "a unit and the units below it"
    );
    assert_eq!(events(&s, "?unit=LYON-2").await, ["order-1"]);
    assert_eq!(events(&s, "?unit=PARIS-1").await, ["call-1"]);
    let midway = urlencoding(&s.midway);
    assert_eq!(
        events(&s, &format!("?from={midway}")).await,
        ["order-2", "order-3"]
    );
    assert_eq!(
        events(&s, &format!("?to={midway}")).await,
        ["order-1", "call-1"]
    );
    assert_eq!(
        events(&s, &format!("?to={midway}&status=completed&unit=PARIS-1")).await,
        ["call-1"],
        "filters combine"
    );
    s.server.stop().await;
}

fn urlencoding(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

async fn pages_follow_each_other_with_no_response_lost_or_repeated(db: &TestDb) {
    let server = TestServer::start(
        config(db, "[channels.console]\nprovider = \"console\"\n"),
        db.storage.clone(),
    )
    .await;
    let client = Client::new();
    let key = api_key(&db.storage, "crm").await;
    let mut invited = Vec::new();
    for n in 0..7 {
        let phone = format!("+3361234570{n}");
        let (status, body) = invite(
            &client,
            &server,
            &key,
            &invitation(&format!("order-{n}"), "delivery", &phone, None),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        invited.push(body["conversation_id"].as_str().unwrap().to_string());
    }
    let s = Surveyed {
        server,
        client,
        key,
        midway: String::new(),
    };
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut query = "?limit=3".to_string();
    loop {
        let body = page(&s, &query).await;
        let items = body["responses"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(
        seen, invited,
        "every response once, in the order they started"
    );
    s.server.stop().await;
}

/// The CSV's cells of `line`, read back with a CSV reader.
fn csv_rows(body: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

async fn the_csv_export_has_a_row_per_response_a_column_per_question_and_no_formula(db: &TestDb) {
    let s = four_surveys(db).await;
    let listed = page(&s, "?flow=delivery").await;
    let listed = listed["responses"].as_array().unwrap();

    let (status, body) = get(&s, "?flow=delivery", Some("text/csv")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = csv_rows(&body);
    let fixed = |r: &Value| -> Vec<String> {
        [
            "id",
            "invitation_id",
            "event_id",
            "flow",
            "unit",
            "contact_id",
            "channel",
            "status",
            "started_at",
            "closed_at",
        ]
        .iter()
        .map(|k| match &r[*k] {
            Value::Null => String::new(),
            Value::String(s) if k.ends_with("_at") => chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .to_rfc3339(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
    };
    let with = |r: &Value, answers: &[&str]| -> Vec<String> {
        let mut cells = fixed(r);
        cells.extend(answers.iter().map(|a| a.to_string()));
        cells
    };
    assert_eq!(
        rows,
        [
            vec![
                "response_id",
                "invitation_id",
                "event_id",
                "flow",
                "unit",
                "contact_id",
                "channel",
                "status",
                "started_at",
                "closed_at",
                "score",
                "score_comment",
                "why_detractor",
                "why_passive",
                "why_promoter",
                "consent",
                "consent_comment",
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
            with(&listed[0], &["8", "", "", "rien a dire", "", "yes", ""]),
            with(
                &listed[1],
                &[
                    "7",
                    "",
                    "",
                    "'=HYPERLINK(\"http://evil.example\",\"clic\")",
                    "",
                    "",
                    "",
                ]
            ),
            with(&listed[2], &["", "", "", "", "", "", ""]),
        ]
    );

    // Every loaded flow's questions, flows in id order, when no flow is chosen; the caller's
    // comment that starts like a phone number is neutralised too.
    let (status, body) = get(&s, "?status=completed", Some("text/csv")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = csv_rows(&body);
    assert_eq!(
        rows[0][10..],
        [
            "satisfaction",
            "satisfaction_comment",
            "comment",
            "score",
            "score_comment",
            "why_detractor",
            "why_passive",
            "why_promoter",
            "consent",
            "consent_comment",
            "effort",
            "effort_comment",
            "solved",
            "solved_comment",
            "what_remains",
        ]
    );
    assert_eq!(rows.len(), 3, "{body}");
    assert_eq!(
        rows[2][10..13],
        ["4", "", "'+33 6 12 34 56 78 rappelez-moi"]
    );
    assert_eq!(rows[2][2], "call-1");
    s.server.stop().await;
}

async fn the_json_lines_export_is_one_response_per_line_as_in_the_pages(db: &TestDb) {
    let s = four_surveys(db).await;
    let listed = page(&s, "?unit=RHONE").await;
    let (status, body) = get(&s, "?unit=RHONE", Some("application/x-ndjson")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.ends_with('\n'));
    let lines: Vec<Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines, *listed["responses"].as_array().unwrap());
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1]["answers"][1]["text"], "=HYPERLINK(\"http://evil.example\",\"clic\")",
        "JSON keeps the customer's words as they are"
    );

    let (status, body) = get(&s, "", Some("application/xml")).await;
    assert_eq!(status, StatusCode::OK);
    let fallback: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        fallback["responses"].as_array().unwrap().len(),
        4,
        "a type hearback does not write gets the JSON page"
    );
    s.server.stop().await;
}

async fn bad_filters_are_refused_with_the_field_and_the_reason(db: &TestDb) {
    organisation(db).await;
    let server = TestServer::start(
        config(db, "[channels.console]\nprovider = \"console\"\n"),
        db.storage.clone(),
    )
    .await;
    let s = Surveyed {
        server,
        client: Client::new(),
        key: api_key(&db.storage, "crm").await,
        midway: String::new(),
    };
    for (query, field) in [
        ("?status=done", "status"),
        ("?from=yesterday", "from"),
        ("?to=2026-13-01T00:00:00Z", "to"),
        ("?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "to"),
        ("?unit=NOWHERE", "unit"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
    ] {
        for accept in [None, Some("text/csv"), Some("application/x-ndjson")] {
            let (status, body) = get(&s, query, accept).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{query} {accept:?}: {body}"
            );
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"]["code"], "invalid_request", "{body}");
            assert!(
                body["error"]["details"]["fields"][field].is_string(),
                "{query}: {body}"
            );
        }
    }
    let (status, body) = get(&s, "?stauts=open", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown filter: {body}");
    s.server.stop().await;
}

crate::both_backends!(
    responses_are_listed_with_their_answers_and_every_filter,
    pages_follow_each_other_with_no_response_lost_or_repeated,
    the_csv_export_has_a_row_per_response_a_column_per_question_and_no_formula,
    the_json_lines_export_is_one_response_per_line_as_in_the_pages,
    bad_filters_are_refused_with_the_field_and_the_reason,
);
