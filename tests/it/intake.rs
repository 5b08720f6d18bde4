//! Intake: imports through the API and the command line, units, and the checks every event goes
//! through (unknown unit, a number that cannot receive texts, the response quota).

use crate::conversations::{
    CUSTOMER, answer_to_the_end, console_messages, delivery_invitation, get_json, invite,
    quick_flow, reply, scheduled_config, sent_to_customer, wait_until,
};
use crate::support::{TestDb, TestServer, api_key};
use hearback::storage::{Actor, NewUnit};
use hearback::units::UnitCode;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_hearback");

async fn create_units(db: &TestDb, codes: &[&str]) {
    for code in codes {
        db.storage
            .create_unit(
                &NewUnit {
                    code: UnitCode::parse(code).unwrap(),
                    name: code.to_string(),
                    parent: None,
                },
                &Actor::Cli,
                hearback::time::Timestamp::now(),
            )
            .await
            .unwrap();
    }
}

/// Posts a file; returns the answer's status and body.
async fn post_import(
    client: &Client,
    server: &TestServer,
    key: &str,
    (content_type, query): (&str, &str),
    body: String,
) -> (StatusCode, Value) {
    let response = client
        .post(server.url(&format!("/api/v1/imports{query}")))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Polls an import until it is no longer running; returns it with its whole report.
async fn finished_import(client: &Client, server: &TestServer, key: &str, id: &str) -> Value {
    let url = server.url(&format!("/api/v1/imports/{id}"));
    for _ in 0..500 {
        let import: Value = client
            .get(&url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if import["status"] != "running" {
            return import;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the import {id} did not finish");
}

fn reasons_by_line(import: &Value) -> Vec<(i64, String)> {
    import["rejections"]
        .as_array()
        .unwrap_or_else(|| panic!("{import}"))
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn an_import_takes_the_good_rows_and_names_every_rejected_one(db: &TestDb) {
    let (config, _flows) = scheduled_config(db, "immediate = true", &quick_flow(""));
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    create_units(db, &["LYON"]).await;
    // A customer who has opted out.
    let stopped = "+33699999999";
    let response = client
        .post(server.url("/webhooks/console/inbound"))
        .json(&json!({ "id": "stop-1", "from": stopped, "to": "console", "text": "STOP" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let file = format!(
        "event_id,flow,phone,unit,first_name,store,order_date\n\
         ok-1,quick,+33611111101,LYON,Ana,Lyon 2,12/11\n\
         ok-2,quick,+33611111102,,Léa,Lyon 2,12/11\n\
         bad-phone,quick,+33 1,,Ana,Lyon 2,12/11\n\
         landline,quick,+33142685300,,Ana,Lyon 2,12/11\n\
         no-flow,nosuch,+33611111103,,Ana,Lyon 2,12/11\n\
         no-unit,quick,+33611111104,NOWHERE,Ana,Lyon 2,12/11\n\
         no-name,quick,+33611111105,,,Lyon 2,12/11\n\
         stopped,quick,{stopped},,Ana,Lyon 2,12/11\n\
         busy,other,+33611111101,,Ana,Lyon 2,12/11\n\
         ok-1,quick,+33611111101,LYON,Ana,Lyon 2,12/11\n\
         ok-1,quick,+33611111109,LYON,Ana,Lyon 2,12/11\n\
         short,quick\n"
    );
    let (status, started) =
        post_import(&client, &server, &key, ("text/csv", ""), file.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let import = finished_import(&client, &server, &key, &id).await;
    assert_eq!(import["status"], "completed", "{import}");
    assert_eq!(
        (&import["rows"], &import["accepted"], &import["rejected"]),
        (&json!(12), &json!(2), &json!(10)),
        "{import}"
    );
    let expected: Vec<(i64, String)> = [
        (4, "invalid_number"),
        (5, "not_mobile"),
        (6, "unknown_flow"),
        (7, "unknown_unit"),
        (8, "missing_variable"),
        (9, "opted_out"),
        (10, "open_conversation"),
        // The same event again, then the same event id with another number.
        (11, "duplicate_event"),
        (12, "duplicate_event"),
        (13, "unreadable"),
    ]
    .into_iter()
    .map(|(line, reason)| (line, reason.to_string()))
    .collect();
    assert_eq!(reasons_by_line(&import), expected, "{import}");
    // The two accepted rows are surveyed.
    for phone in ["+33611111101", "+33611111102"] {
        wait_until("the first question is sent", || {
            let url = server.url(&format!("/api/v1/console/messages?to=%2B{}", &phone[1..]));
            let request = client.get(url).bearer_auth(&key).send();
            async move {
                let body: Value = request.await.unwrap().json().await.unwrap();
                body["messages"].as_array().is_some_and(|m| m.len() == 1)
            }
        })
        .await;
    }

    // The same file again changes nothing: every row is reported, the good ones as duplicates
    // of the invitations the first import made.
    let (status, again) = post_import(&client, &server, &key, ("text/csv", ""), file).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let again = finished_import(&client, &server, &key, again["id"].as_str().unwrap()).await;
    assert_eq!(
        (&again["accepted"], &again["rejected"]),
        (&json!(0), &json!(12)),
        "{again}"
    );
    let first_rows = &again["rejections"].as_array().unwrap()[..2];
    for row in first_rows {
        assert_eq!(row["reason"], "duplicate_event", "{row}");
        assert!(row["invitation_id"].is_string(), "{row}");
    }
    let ok_1 = client
        .get(server.url(&format!(
            "/api/v1/invitations/{}",
            first_rows[0]["invitation_id"].as_str().unwrap()
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let ok_1: Value = ok_1.json().await.unwrap();
    assert_eq!(ok_1["event_id"], "ok-1", "{ok_1}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let url = server.url("/api/v1/console/messages?to=%2B33611111101");
    let sent = get_json(&client, url, &key).await;
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1, "{sent}");
    server.stop().await;
}

async fn an_import_in_json_lines_reports_each_line_and_pages_its_report(db: &TestDb) {
    let (config, _flows) = scheduled_config(db, "immediate = true", &quick_flow(""));
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let variables = json!({ "first_name": "Ana", "store": "Lyon 2", "order_date": "12/11" });
    let mut lines: Vec<String> = (0..5)
        .map(|n| {
            json!({ "event_id": format!("j-{n}"), "flow": "quick", "phone": format!("+3361111120{n}"), "variables": variables })
                .to_string()
        })
        .collect();
    lines.push("{\"event_id\": \"broken\"".into());
    lines.push(String::new());
    lines.push(
        json!({ "event_id": "j-9", "flow": "quick", "phone": "12", "variables": variables })
            .to_string(),
    );
    let (status, started) = post_import(
        &client,
        &server,
        &key,
        ("application/octet-stream", "?format=jsonl"),
        lines.join("\n"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["id"].as_str().unwrap();
    let import = finished_import(&client, &server, &key, id).await;
    assert_eq!(
        (&import["rows"], &import["accepted"], &import["rejected"]),
        (&json!(7), &json!(5), &json!(2)),
        "{import}"
    );
    assert_eq!(
        reasons_by_line(&import),
        vec![
            (6, "unreadable".to_string()),
            (8, "invalid_number".to_string())
        ]
    );
    // One rejection per page: the first page points to the second, the second is the last.
    let page = |after: Option<i64>| {
        let mut url = server.url(&format!("/api/v1/imports/{id}?limit=1"));
        if let Some(after) = after {
            url.push_str(&format!("&after_line={after}"));
        }
        let request = client.get(url).bearer_auth(&key).send();
        async move { request.await.unwrap().json::<Value>().await.unwrap() }
    };
    let first = page(None).await;
    assert_eq!(first["next_after_line"], 6, "{first}");
    let second = page(Some(6)).await;
    assert_eq!(
        reasons_by_line(&second),
        vec![(8, "invalid_number".to_string())]
    );
    let last = page(Some(8)).await;
    assert!(last["rejections"].as_array().unwrap().is_empty(), "{last}");
    assert!(last["next_after_line"].is_null(), "{last}");
    server.stop().await;
}

async fn an_import_that_cannot_be_taken_is_refused_with_the_error_shape(db: &TestDb) {
    let mut config = crate::conversations::config(db, "[channels.console]\nprovider = \"console\"");
    config.server.import_body_limit_bytes = 1_000;
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let header = "event_id,flow,phone\n".to_string();
    for ((content_type, query), body, status, code) in [
        (
            ("application/json", ""),
            header.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            ("text/csv", "?format=xml"),
            header.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            ("text/csv", "?format="),
            header.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (
            ("text/csv", "?limit=x"),
            header.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            ("text/csv", ""),
            "x".repeat(1_001),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ] {
        let (got, body) = post_import(&client, &server, &key, (content_type, query), body).await;
        assert_eq!(got, status, "{content_type}{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // A file without the needed columns is taken, then fails with the reason.
    let (status, started) = post_import(
        &client,
        &server,
        &key,
        ("text/csv", ""),
        "event_id,phone\na,+33611111101\n".into(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let failed = finished_import(&client, &server, &key, started["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["error"], "the CSV header has no 'flow' column",
        "{failed}"
    );
    let missing = client
        .get(server.url("/api/v1/imports/nope"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let unauthenticated = client
        .post(server.url("/api/v1/imports"))
        .header("content-type", "text/csv")
        .body(header)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

async fn an_invitation_names_an_unknown_unit_and_a_number_that_cannot_receive_texts(db: &TestDb) {
    let (config, _flows) = scheduled_config(db, "immediate = true", &quick_flow(""));
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let mut body = delivery_invitation("order-1");
    body["flow"] = json!("quick");
    body["unit"] = json!("NOWHERE");
    body["phone"] = json!("+33142685300");
    let (status, refused) = invite(&client, &server, &key, &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let fields = &refused["error"]["details"]["fields"];
    assert_eq!(
        fields["unit"], "no unit has the code 'NOWHERE'",
        "{refused}"
    );
    assert_eq!(
        fields["phone"], "not a mobile number: it cannot receive text messages",
        "{refused}"
    );
    create_units(db, &["LYON"]).await;
    body["unit"] = json!("LYON");
    body["phone"] = json!(CUSTOMER);
    let (status, accepted) = invite(&client, &server, &key, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["status"], "scheduled", "{accepted}");
    server.stop().await;
}

async fn a_unit_whose_quota_is_reached_gets_no_more_invitations(db: &TestDb) {
    let flow = quick_flow("  quota: { responses: 1, per: month }");
    let (config, _flows) = scheduled_config(db, "immediate = true", &flow);
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    create_units(db, &["LYON", "PARIS"]).await;
    let invitation = |event: &str, phone: &str, unit: Option<&str>| {
        let mut body = delivery_invitation(event);
        body["flow"] = json!("quick");
        body["phone"] = json!(phone);
        body["unit"] = json!(unit);
        body
    };
    let (_, first) = invite(
        &client,
        &server,
        &key,
        &invitation("e-1", CUSTOMER, Some("LYON")),
    )
    .await;
    assert_eq!(first["status"], "scheduled", "{first}");
    // Invited is not a response: the quota counts answers.
    let (_, second) = invite(
        &client,
        &server,
        &key,
        &invitation("e-2", "+33611111102", Some("LYON")),
    )
    .await;
    assert_eq!(second["status"], "scheduled", "{second}");
    sent_to_customer(&client, &server, &key, 1).await;
    reply(&client, &server, "in-1", "9").await;
    let conversation = first["conversation_id"].as_str().unwrap().to_string();
    wait_until("the answer is stored", || async {
        !db.storage
            .conversation_answers(&conversation)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let (_, third) = invite(
        &client,
        &server,
        &key,
        &invitation("e-3", "+33611111103", Some("LYON")),
    )
    .await;
    assert_eq!(
        (&third["status"], &third["status_reason"]),
        (&json!("declined"), &json!("quota_reached")),
        "{third}"
    );
    // Another unit, and events without a unit, have their own count.
    for (event, phone, unit) in [
        ("e-4", "+33611111104", Some("PARIS")),
        ("e-5", "+33611111105", None),
    ] {
        let (_, other) = invite(&client, &server, &key, &invitation(event, phone, unit)).await;
        assert_eq!(other["status"], "scheduled", "{other}");
    }
    assert_eq!(console_messages(&client, &server, &key).await.len(), 2);
    server.stop().await;
}

async fn invitations_are_listed_by_status_unit_and_flow_a_page_at_a_time(db: &TestDb) {
    let (config, _flows) = scheduled_config(db, "immediate = true", &quick_flow(""));
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    create_units(db, &["ACME", "PARIS"]).await;
    db.storage
        .create_unit(
            &NewUnit {
                code: UnitCode::parse("LYON").unwrap(),
                name: "Lyon".into(),
                parent: Some(UnitCode::parse("ACME").unwrap()),
            },
            &Actor::Cli,
            hearback::time::Timestamp::now(),
        )
        .await
        .unwrap();
    for (event, phone, unit) in [
        ("=HYPERLINK(\"x\")", "+33611111301", Some("LYON")),
        ("e-2", "+33611111302", Some("ACME")),
        ("e-3", "+33611111303", Some("PARIS")),
        ("e-4", "+33611111301", None),
    ] {
        let mut body = delivery_invitation(event);
        body["flow"] = json!("quick");
        body["phone"] = json!(phone);
        body["unit"] = json!(unit);
        let (status, created) = invite(&client, &server, &key, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    }
    let list = |query: &str| {
        let request = client
            .get(server.url(&format!("/api/v1/invitations{query}")))
            .bearer_auth(&key)
            .send();
        async move {
            let response = request.await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let events = |body: &Value| -> Vec<String> {
        body["invitations"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|i| i["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    // A unit lists its sub-units' invitations too.
    let (_, acme) = list("?unit=ACME").await;
    assert_eq!(events(&acme), ["=HYPERLINK(\"x\")", "e-2"], "{acme}");
    assert_eq!(acme["invitations"][0]["unit"], "LYON", "{acme}");
    let (_, declined) = list("?status=declined").await;
    assert_eq!(events(&declined), ["e-4"], "{declined}");
    assert_eq!(
        declined["invitations"][0]["status_reason"],
        "open_conversation"
    );
    let (_, none) = list("?flow=other").await;
    assert!(events(&none).is_empty(), "{none}");
    // Pages of two, in creation order.
    let (_, first) = list("?limit=2").await;
    assert_eq!(events(&first), ["=HYPERLINK(\"x\")", "e-2"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = list(&format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(events(&second), ["e-3", "e-4"]);
    let cursor = second["next_cursor"].as_str().unwrap().to_string();
    let (_, last) = list(&format!("?limit=2&cursor={cursor}")).await;
    assert!(
        events(&last).is_empty() && last["next_cursor"].is_null(),
        "{last}"
    );
    // Bad filters get the error shape.
    let (status, bad) = list("?status=lost&limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert!(
        bad["error"]["details"]["fields"]["status"].is_string(),
        "{bad}"
    );
    assert!(
        bad["error"]["details"]["fields"]["limit"].is_string(),
        "{bad}"
    );
    let (status, bad) = list("?from=yesterday").await;
    assert_eq!(
        (status, &bad["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );
    // The CSV export: what a spreadsheet would run as a formula is neutralised.
    let csv = client
        .get(server.url("/api/v1/invitations?unit=LYON"))
        .bearer_auth(&key)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert_eq!(&rows[0][1], "'=HYPERLINK(\"x\")", "{csv}");
    assert_eq!(&rows[0][4], "+33611111301", "{csv}");
    server.stop().await;
}

async fn sends_beyond_the_daily_guards_are_held_and_reported(db: &TestDb) {
    // Two texts started per number per day; a unit may spend 0.04 a day, a text costs 0.05.
    let flows = tempfile::tempdir().unwrap();
    std::fs::write(flows.path().join("quick.yaml"), quick_flow("")).unwrap();
    let config = db.config_from_toml(&format!(
        "[flows]\ndir = \"{}\"\n\n[jobs]\npoll_interval_ms = 20\n\n[dispatch]\nimmediate = true\n\
         frequency_cap_days = 0\ncontact_daily_sms_cap = 2\nunit_daily_spend_cap = 0.04\n\n\
         [channels.console]\nprovider = \"console\"\ncost_per_segment = 0.05\n",
        flows.path().display()
    ));
    let server = TestServer::start(config, db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    create_units(db, &["LYON"]).await;
    let invitation = |event: &str, phone: &str, unit: Option<&str>| {
        let mut body = delivery_invitation(event);
        body["flow"] = json!("quick");
        body["phone"] = json!(phone);
        body["unit"] = json!(unit);
        body
    };
    // Two surveys go out and are answered to the end: each opening counts against the cap of
    // two, the questions and thanks answering the customer do not (eight texts in all).
    for (round, event) in ["e-0", "e-1"].into_iter().enumerate() {
        let (_, survey) = invite(&client, &server, &key, &invitation(event, CUSTOMER, None)).await;
        assert_eq!(survey["status"], "scheduled", "{survey}");
        sent_to_customer(&client, &server, &key, 4 * round + 1).await;
        answer_to_the_end(db, (&client, &server), &survey, &format!("in-{round}")).await;
    }
    // Each survey's opening, two questions and thanks.
    let answered = 8;
    sent_to_customer(&client, &server, &key, answered).await;
    // A third survey the same day waits for tomorrow; so does the unit's first, over budget.
    let (_, second) = invite(&client, &server, &key, &invitation("e-2", CUSTOMER, None)).await;
    let (_, over_budget) = invite(
        &client,
        &server,
        &key,
        &invitation("e-3", "+33611111401", Some("LYON")),
    )
    .await;
    for (invitation, reason) in [
        (&second, "contact_daily_cap"),
        (&over_budget, "unit_spend_cap"),
    ] {
        let id = invitation["id"].as_str().unwrap().to_string();
        wait_until("the invitation is held", || async {
            db.storage.invitation(&id).await.unwrap().unwrap().status == "held"
        })
        .await;
        let record = db.storage.invitation(&id).await.unwrap().unwrap();
        assert_eq!(record.status_reason.as_deref(), Some(reason));
    }
    let held = get_json(&client, server.url("/api/v1/invitations?status=held"), &key).await;
    assert_eq!(
        held["invitations"].as_array().map(Vec::len),
        Some(2),
        "{held}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Held, not dropped: the openings wait, queued, for the next day.
    let messages = console_messages(&client, &server, &key).await;
    let statuses: Vec<&str> = messages
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), answered + 1, "{messages:#?}");
    assert_eq!(statuses[answered], "queued", "{messages:#?}");
    let other = get_json(
        &client,
        server.url("/api/v1/console/messages?to=%2B33611111401"),
        &key,
    )
    .await;
    assert_eq!(other["messages"][0]["status"], "queued", "{other}");
    server.stop().await;
}

/// An import of several batches: each row is reported once and in file order; a customer's rows
/// are applied in file order across batches (the first is accepted, the later ones meet it); an
/// event given again in a later batch is a duplicate.
async fn a_large_import_reports_every_row_in_file_order_and_each_customer_in_order(db: &TestDb) {
    let (config, flows) = scheduled_config(db, "", &quick_flow(""));
    let flows = hearback::flow::load_paths(&[flows.path().to_path_buf()]);
    let intake = hearback::intake::Intake::new(&config, std::sync::Arc::new(flows.flows));
    const NUMBERS: usize = 1_000;
    const ROWS: usize = 2_500;
    const AGAIN_FROM: usize = 2_400;
    let mut file = String::from("event_id,flow,phone,locale,first_name,store,order_date\n");
    for row in 0..ROWS {
        // The last rows give events of the first rows again, for other numbers.
        let event = if row >= AGAIN_FROM {
            row - AGAIN_FROM
        } else {
            row
        };
        file.push_str(&format!(
            "e-{event},quick,+3361{:07},fr-FR,Ana,Lyon 2,12/11\n",
            row % NUMBERS
        ));
    }
    let id = "import-large";
    let reports = import_csv(db, &intake, id, file).await;

    let lines: Vec<u64> = reports.iter().map(|r| r.line).collect();
    let expected: Vec<u64> = (2..ROWS as u64 + 2).collect();
    assert_eq!(lines, expected, "every row once, in file order");
    for (row, report) in reports.iter().enumerate() {
        let expected = if row < NUMBERS {
            None
        } else if row < AGAIN_FROM {
            Some("open_conversation")
        } else {
            Some("duplicate_event")
        };
        let reason = match &report.outcome {
            hearback::import::RowOutcome::Accepted { .. } => None,
            hearback::import::RowOutcome::Rejected(rejection) => Some(rejection.reason.as_str()),
        };
        assert_eq!(reason, expected, "row {row}: {report:?}");
    }
    let record = db.storage.import(id).await.unwrap().unwrap();
    assert_eq!(
        (
            record.status.as_str(),
            record.rows,
            record.accepted,
            record.rejected
        ),
        (
            "completed",
            ROWS as i64,
            NUMBERS as i64,
            (ROWS - NUMBERS) as i64
        )
    );
}

/// Runs import `id` of a CSV `file` from source `crm`; the rows' reports, as they were given.
async fn import_csv(
    db: &TestDb,
    intake: &hearback::intake::Intake,
    id: &str,
    file: String,
) -> Vec<hearback::import::RowReport> {
    let (reports, outcome) = try_import_csv(db, intake, id, file).await;
    outcome.unwrap();
    reports
}

/// [`import_csv`], with how the import ended.
async fn try_import_csv(
    db: &TestDb,
    intake: &hearback::intake::Intake,
    id: &str,
    file: String,
) -> (
    Vec<hearback::import::RowReport>,
    Result<(), hearback::import::ImportError>,
) {
    db.storage
        .create_import(id, "crm", "csv", hearback::time::Timestamp::now())
        .await
        .unwrap();
    let mut reports = Vec::new();
    let outcome = hearback::import::run(
        &db.storage,
        intake,
        (id, "crm"),
        (
            hearback::import::Format::Csv,
            Box::new(std::io::Cursor::new(file.into_bytes())),
        ),
        std::sync::Arc::new(hearback::import::Progress::default()),
        |report| reports.push(report.clone()),
    )
    .await;
    (reports, outcome)
}

/// A batch the database refuses stops the import, and what the import reports is exactly what
/// it wrote: on PostgreSQL the other batch of the round (`import::POSTGRES_LANES`) is written
/// and its rows reported; nothing written goes unreported, nothing reported is missing.
async fn an_import_that_fails_reports_exactly_the_rows_it_wrote(db: &TestDb) {
    // A real refusal from the database: a trigger rejects one event.
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON invitations \
             WHEN NEW.event_id = 'poison' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.event_id = 'poison' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON invitations \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let (config, flows) = scheduled_config(db, "", &quick_flow(""));
    let flows = hearback::flow::load_paths(&[flows.path().to_path_buf()]);
    let intake = hearback::intake::Intake::new(&config, std::sync::Arc::new(flows.flows));
    // Several rounds (a lane's batch fills at 1 000 rows): when the poisoned batch fails, the
    // other lane may have written a later round already, and those rows are reported too.
    const ROWS: usize = 6_000;
    const POISON: usize = 1_200;
    let mut file = String::from("event_id,flow,phone,locale,first_name,store,order_date\n");
    for row in 0..ROWS {
        let event = if row == POISON {
            "poison".to_string()
        } else {
            format!("e-{row}")
        };
        file.push_str(&format!(
            "{event},quick,+3361{row:07},fr-FR,Ana,Lyon 2,12/11\n"
        ));
    }
    let (reports, outcome) = try_import_csv(db, &intake, "import-poison", file).await;

    let error = outcome.expect_err("the refused batch stops the import");
    assert!(error.to_string().contains("refused by the test"), "{error}");
    let record = db.storage.import("import-poison").await.unwrap().unwrap();
    assert_eq!(record.status, "failed");
    assert!(!reports.is_empty(), "the rows written before are reported");
    let lines: Vec<u64> = reports.iter().map(|r| r.line).collect();
    assert!(lines.is_sorted() && lines.windows(2).all(|w| w[0] != w[1]));
    let reported: std::collections::BTreeSet<String> = reports
        .iter()
        .filter(|r| matches!(r.outcome, hearback::import::RowOutcome::Accepted { .. }))
        .map(|r| r.event_id.clone().unwrap())
        .collect();
    assert_eq!(
        reported.len(),
        reports.len(),
        "every row written is accepted"
    );
    let stored: std::collections::BTreeSet<String> = db
        .storage
        .list_invitations(&Default::default(), None, ROWS as u32)
        .await
        .unwrap()
        .into_iter()
        .map(|invitation| invitation.event_id)
        .collect();
    assert_eq!(
        reported, stored,
        "the report names exactly the invitations written"
    );
    assert_eq!(record.accepted, reported.len() as i64);
    if db.url.starts_with("postgres") {
        // The poisoned batch was its lane's first: that lane stopped there and wrote none of
        // its later batches (its numbers' later rows never go before their earlier ones).
        let lanes = hearback::import::POSTGRES_LANES;
        let number = |event: &str| -> String {
            let row: usize = event.trim_start_matches("e-").parse().unwrap();
            format!("+3361{row:07}")
        };
        let poisoned = hearback::import::lane_of(&number(&format!("e-{POISON}")), lanes);
        let from_that_lane: Vec<&String> = stored
            .iter()
            .filter(|event| hearback::import::lane_of(&number(event), lanes) == poisoned)
            .collect();
        assert!(from_that_lane.is_empty(), "{from_that_lane:?}");
        assert!(!stored.is_empty(), "the other lane wrote its batches");
    }
}

/// Rows of one event for two numbers, close enough to be written together (PostgreSQL writes
/// a number's rows in its own lane, `import::POSTGRES_LANES`): the first row in the file takes
/// the event and the second is a duplicate, every time, whichever lanes the numbers fall in.
async fn the_first_row_of_an_event_wins_even_when_its_numbers_are_written_at_once(db: &TestDb) {
    let (config, flows) = scheduled_config(db, "", &quick_flow(""));
    let flows = hearback::flow::load_paths(&[flows.path().to_path_buf()]);
    let intake = hearback::intake::Intake::new(&config, std::sync::Arc::new(flows.flows));
    // More than a round (a lane's batch fills at 1 000 rows): most second rows are dealt a round
    // after their first, which another lane may still be writing.
    const EVENTS: usize = 1_500;
    let mut file = String::from("event_id,flow,phone,locale,first_name,store,order_date\n");
    for again in [false, true] {
        for event in 0..EVENTS {
            let number = if again { 50_000 + event } else { event };
            file.push_str(&format!(
                "e-{event},quick,+3361{number:07},fr-FR,Ana,Lyon 2,12/11\n"
            ));
        }
    }
    let reports = import_csv(db, &intake, "import-twice", file).await;

    assert_eq!(reports.len(), 2 * EVENTS);
    for (row, report) in reports.iter().enumerate() {
        let reason = match &report.outcome {
            hearback::import::RowOutcome::Accepted { .. } => None,
            hearback::import::RowOutcome::Rejected(rejection) => Some(rejection.reason.as_str()),
        };
        let expected = (row >= EVENTS).then_some("duplicate_event");
        assert_eq!(reason, expected, "row {row}: {report:?}");
    }
    for event in 0..EVENTS {
        let first = hearback::phone::Phone::parse(&format!("+3361{event:07}"), None).unwrap();
        let contact = db.storage.contact_by_phone(&first).await.unwrap();
        assert!(
            contact.is_some(),
            "the first number of e-{event} has its contact"
        );
    }
}

/// An import's batch and its report are one transaction: a report that cannot be made leaves
/// no invitation behind, and one that is made counts exactly the invitations written.
async fn an_import_batch_and_its_report_are_written_together_or_not_at_all(db: &TestDb) {
    let now = hearback::time::Timestamp::now();
    let tomorrow = now + std::time::Duration::from_secs(86_400);
    let batch = [crate::conversations::planned_invitation(
        "order-1", now, tomorrow,
    )];
    db.storage
        .create_import("import-1", "test", "csv", now)
        .await
        .unwrap();
    let failed = db
        .storage
        .import_invitations("import-1", &batch, |_| -> Result<(_, ()), _> {
            Err(hearback::storage::StorageError::Conflict(
                "the report cannot be made",
            ))
        })
        .await;
    assert!(
        matches!(
            failed,
            Err(hearback::storage::StorageError::Conflict(
                "the report cannot be made"
            ))
        ),
        "{failed:?}"
    );
    let customer = hearback::phone::Phone::parse(CUSTOMER, None).unwrap();
    assert!(
        db.storage
            .contact_by_phone(&customer)
            .await
            .unwrap()
            .is_none(),
        "no contact without its report"
    );
    let listed = db
        .storage
        .list_invitations(&Default::default(), None, 10)
        .await
        .unwrap();
    assert!(
        listed.is_empty(),
        "no invitation without its report: {listed:?}"
    );

    let created = db
        .storage
        .import_invitations("import-1", &batch, |outcomes| {
            let accepted = outcomes
                .iter()
                .filter(|o| matches!(o, Ok(hearback::storage::InvitationOutcome::Created(_))))
                .count() as u64;
            let chunk = hearback::storage::ImportChunk {
                accepted,
                rejections: Vec::new(),
                at: now,
            };
            Ok((chunk, accepted))
        })
        .await
        .unwrap();
    assert_eq!(created, 1);
    let record = db.storage.import("import-1").await.unwrap().unwrap();
    assert_eq!((record.rows, record.accepted, record.rejected), (1, 1, 0));
}

crate::both_backends!(
    sends_beyond_the_daily_guards_are_held_and_reported,
    an_import_batch_and_its_report_are_written_together_or_not_at_all,
    a_large_import_reports_every_row_in_file_order_and_each_customer_in_order,
    the_first_row_of_an_event_wins_even_when_its_numbers_are_written_at_once,
    an_import_that_fails_reports_exactly_the_rows_it_wrote,
    invitations_are_listed_by_status_unit_and_flow_a_page_at_a_time,
    an_import_takes_the_good_rows_and_names_every_rejected_one,
    an_import_in_json_lines_reports_each_line_and_pages_its_report,
    an_import_that_cannot_be_taken_is_refused_with_the_error_shape,
    an_invitation_names_an_unknown_unit_and_a_number_that_cannot_receive_texts,
    a_unit_whose_quota_is_reached_gets_no_more_invitations,
);

fn hearback(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BINARY);
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("HEARBACK_") {
            command.env_remove(name);
        }
    }
    command.output().expect("run hearback")
}

#[test]
fn the_import_commands_report_every_row_and_can_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    std::fs::write(
        dir.path().join("hearback.toml"),
        format!(
            "[flows]\ndir = \"{flows}\"\n\n[dispatch]\ndefault_region = \"FR\"\n\n\
             [channels.console]\nprovider = \"console\"\n"
        ),
    )
    .unwrap();
    // Children before their parents: the command orders them.
    std::fs::write(
        dir.path().join("units.csv"),
        "code,name,parent\nLYON-2,Lyon 2,RHONE\nRHONE,Rhône,\n",
    )
    .unwrap();
    for expected in [
        json!({"created": 2, "unchanged": 0}),
        json!({"created": 0, "unchanged": 2}),
    ] {
        let output = hearback(dir.path(), &["units", "import", "units.csv"]);
        assert!(output.status.success(), "{output:?}");
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(summary, expected);
    }
    std::fs::write(
        dir.path().join("bad-units.csv"),
        "code,name,parent\nPARIS,Paris,NOWHERE\n",
    )
    .unwrap();
    let output = hearback(dir.path(), &["units", "import", "bad-units.csv"]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("line 2: the parent 'NOWHERE' is neither in the file nor in the tree"),
        "{error}"
    );

    // National numbers, read in the default region.
    std::fs::write(
        dir.path().join("events.csv"),
        "event_id,flow,phone,unit,first_name,store,order_date\n\
         a,delivery,06 11 11 11 01,LYON-2,Ana,Lyon 2,12/11\n\
         b,delivery,01 42 68 53 00,LYON-2,Ana,Lyon 2,12/11\n",
    )
    .unwrap();
    for (accepted, statuses) in [(1, ["accepted", "rejected"]), (0, ["rejected", "rejected"])] {
        let output = hearback(
            dir.path(),
            &["import", "events.csv", "--report", "report.csv"],
        );
        assert!(output.status.success(), "{output:?}");
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            (&summary["rows"], &summary["accepted"]),
            (&json!(2), &json!(accepted)),
            "{summary}"
        );
        let report = std::fs::read_to_string(dir.path().join("report.csv")).unwrap();
        let rows: Vec<Vec<&str>> = report
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows.len(), 2, "{report}");
        for (row, status) in rows.iter().zip(statuses) {
            assert_eq!(row[2], status, "{report}");
        }
        assert_eq!(rows[1][3], "not_mobile", "{report}");
    }
}
