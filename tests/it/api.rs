//! The HTTP edge, served for real on a free port: health, readiness, auth, units, errors,
//! metrics and the OpenAPI document.

use crate::support::{TestDb, TestServer, api_key};
use hearback::http::{AppState, router};
use hearback::storage::{Actor, Storage};
use hearback::time::Timestamp;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn started() -> (TestDb, TestServer, String) {
    let db = TestDb::sqlite().await;
    let key = api_key(&db.storage, "crm").await;
    let server = TestServer::start(db.config(), db.storage.clone()).await;
    (db, server, key)
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("errors are JSON");
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "{body}"
    );
    (status, body["error"].clone())
}

#[tokio::test]
async fn health_and_readiness_answer_on_a_fresh_database() {
    let (db, server, _) = started().await;
    let client = Client::new();
    let alive = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK);
    let ready: Value = client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], "sqlite");
    assert!(ready["schema_version"].as_i64().unwrap() > 0);
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn readiness_is_503_with_the_reason_when_the_schema_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let storage = Storage::connect(&crate::support::database_config(&url))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(storage, &Default::default(), Default::default()).unwrap();
    let app = router(state, &Default::default());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error["code"], "not_ready");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("hearback migrate"),
        "{error}"
    );
    let alive = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(
        alive.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );
}

#[tokio::test]
async fn api_calls_need_a_valid_unrevoked_key() {
    let (db, server, key) = started().await;
    let client = Client::new();
    let units = server.url("/api/v1/units");

    let missing = client.get(&units).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let (status, error) = error_of(missing).await;
    assert_eq!(
        (status, error["code"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );

    let mut wrong_secret = key.clone();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == '0' { '1' } else { '0' });
    for presented in [
        format!("Bearer {wrong_secret}"),
        "Bearer hb_nothing".into(),
        format!("Basic {key}"),
        key.clone(),
    ] {
        let response = client
            .get(&units)
            .header("authorization", presented.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{presented}");
    }

    let ok = client.get(&units).bearer_auth(&key).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let id = key.split('_').nth(1).unwrap();
    db.storage
        .revoke_api_key(id, &Actor::Cli, Timestamp::now())
        .await
        .unwrap();
    let revoked = client.get(&units).bearer_auth(&key).send().await.unwrap();
    let (status, error) = error_of(revoked).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["message"], "invalid or revoked API key");
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn units_are_created_and_read_as_a_tree() {
    let (db, server, key) = started().await;
    let client = Client::new();
    for (code, parent) in [
        ("ACME", None),
        ("RHONE", Some("ACME")),
        ("LYON-2", Some("RHONE")),
    ] {
        let response = client
            .post(server.url("/api/v1/units"))
            .bearer_auth(&key)
            .json(&json!({"code": code, "name": format!("  {code} unit "), "parent": parent}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code);
        assert_eq!(body["name"], format!("{code} unit"), "names are trimmed");
    }
    let detail: Value = client
        .get(server.url("/api/v1/units/RHONE"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["parent"], "ACME");
    assert_eq!(detail["ancestors"], json!(["ACME"]));
    assert_eq!(detail["children"], json!(["LYON-2"]));

    let list: Value = client
        .get(server.url("/api/v1/units"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes: Vec<&str> = list["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["ACME", "LYON-2", "RHONE"]);

    let audit = db.storage.audit_entries("unit", 1).await.unwrap();
    assert_eq!(
        audit[0].actor,
        format!("api_key:{}", key.split('_').nth(1).unwrap()),
        "changes are audited with the caller"
    );

    let missing = client
        .get(server.url("/api/v1/units/NOPE"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(missing).await.0, StatusCode::NOT_FOUND);
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn bad_unit_requests_get_a_precise_error_and_change_nothing() {
    let (db, server, key) = started().await;
    let client = Client::new();
    let post = |body: String, content_type: &'static str| {
        client
            .post(server.url("/api/v1/units"))
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(
        post(
            json!({"code": "ACME", "name": "Acme"}).to_string(),
            "application/json"
        )
        .await
        .unwrap()
        .status(),
        StatusCode::CREATED
    );

    let cases: Vec<(String, &str, StatusCode, &str)> = vec![
        (
            json!({"code": "ACME", "name": "Again"}).to_string(),
            "application/json",
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            json!({"code": "X", "name": "X", "parent": "GHOST"}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_reference",
        ),
        (
            json!({"code": "bad code", "name": " ", "parent": "a/b"}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"code": "X", "name": "X", "colour": "red"}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"name": "X"}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "{\"code\": ".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!({"code": "X", "name": "X"}).to_string(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            format!(
                "{{\"code\":\"X\",\"name\":\"{}\"}}",
                "x".repeat(2 * 1024 * 1024)
            ),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (body, content_type, expected_status, expected_code) in cases {
        let shown: String = body.chars().take(60).collect();
        let (status, error) = error_of(post(body, content_type).await.unwrap()).await;
        assert_eq!(
            (status, error["code"].as_str().unwrap()),
            (expected_status, expected_code),
            "{shown}: {error}"
        );
    }

    let (_, error) = error_of(
        post(
            json!({"code": "bad code", "name": " ", "parent": "a/b"}).to_string(),
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    let fields = &error["details"]["fields"];
    assert!(
        fields["code"]
            .as_str()
            .unwrap()
            .contains("invalid unit code"),
        "{error}"
    );
    assert!(
        fields["name"].is_string() && fields["parent"].is_string(),
        "every invalid field is reported: {error}"
    );

    assert_eq!(
        db.storage.units().await.unwrap().len(),
        1,
        "no refused request left a unit behind"
    );
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_the_error_shape() {
    let (db, server, key) = started().await;
    let client = Client::new();
    let (status, error) = error_of(client.get(server.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, error) = error_of(
        client
            .delete(server.url("/api/v1/units"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    // A provider set to call back with GET is told what to change.
    let response = client
        .get(server.url("/webhooks/console/inbound?From=%2B33612345678&Body=9"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    let (status, error) = error_of(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("method to POST"),
        "{error}"
    );
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_jobs_by_state() {
    let (db, server, key) = started().await;
    let client = Client::new();
    client
        .get(server.url("/api/v1/units/SECRET-UNIT-CODE"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let response = client.get(server.url("/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(text.contains(r#"hearback_http_requests_total{method="GET",route="/api/v1/units/{code}",status="404"}"#), "{text}");
    assert!(text.contains(r#"hearback_http_request_duration_seconds_bucket{method="GET",route="/api/v1/units/{code}""#), "{text}");
    assert!(
        !text.contains("SECRET-UNIT-CODE"),
        "concrete paths never become labels"
    );
    for state in ["pending", "running", "succeeded", "dead"] {
        assert!(
            text.contains(&format!("hearback_jobs{{state=\"{state}\"}}")),
            "{state}: {text}"
        );
    }
    server.stop().await;
    db.cleanup().await;
}

/// The `/api/v1` routes of the public contract implemented so far. A route added to the API
/// must be added here, and this test proves the document describes it.
const CONTRACT_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/units"),
    ("post", "/api/v1/units"),
    ("get", "/api/v1/units/{code}"),
    ("post", "/api/v1/invitations"),
    ("get", "/api/v1/invitations"),
    ("get", "/api/v1/invitations/{id}"),
    ("post", "/api/v1/imports"),
    ("get", "/api/v1/imports/{id}"),
    ("get", "/api/v1/responses"),
    ("get", "/api/v1/console/messages"),
    ("get", "/api/v1/cases"),
    ("get", "/api/v1/cases/{id}"),
    ("post", "/api/v1/cases/{id}/messages"),
    ("post", "/api/v1/cases/{id}/assign"),
    ("post", "/api/v1/cases/{id}/resolve"),
    ("get", "/api/v1/webhook-endpoints"),
    ("post", "/api/v1/webhook-endpoints"),
    ("post", "/api/v1/webhook-endpoints/{id}/replay"),
    ("get", "/api/v1/webhook-deliveries"),
    ("post", "/api/v1/webhook-deliveries/{id}/retry"),
    ("get", "/api/v1/contacts/{phone}"),
    ("delete", "/api/v1/contacts/{phone}"),
];

#[tokio::test]
async fn the_openapi_document_describes_every_api_route_that_is_served() {
    let (db, server, _) = started().await;
    let client = Client::new();
    let document: Value = client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = CONTRACT_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // Every documented route is really served, behind authentication.
    for (method, path) in &documented {
        let concrete = path.replace("{code}", "ACME");
        let request = client.request(
            method.to_uppercase().parse().unwrap(),
            server.url(&concrete),
        );
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    assert!(document["components"]["securitySchemes"]["api_key"].is_object());
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());
    server.stop().await;
    db.cleanup().await;
}

/// Routes enter `/api/v1` only through `utoipa_axum::routes!`, which documents them; a plain
/// `.route(` there would serve an undocumented route.
#[test]
fn api_routes_are_registered_only_through_the_documenting_macro() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/api");
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for forbidden in [".route(", ".route_service(", ".nest_service("] {
            assert!(
                !source.contains(forbidden),
                "{} registers a route with {forbidden}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn every_api_call_is_in_the_audit_log_with_its_caller_route_and_target() {
    let (db, server, key) = started().await;
    let client = Client::new();
    let created = client
        .post(server.url("/api/v1/units"))
        .bearer_auth(&key)
        .json(&json!({"code": "ACME", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let missing = client
        .get(server.url("/api/v1/units/NOPE"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let unauthenticated = client
        .get(server.url("/api/v1/units/ACME"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let entries = db.storage.audit_entries("units", 10).await.unwrap();
    let requests: Vec<_> = entries
        .iter()
        .filter(|e| e.action.starts_with("GET ") || e.action.starts_with("POST "))
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.target_id.as_deref(),
                e.details["status"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        requests,
        vec![
            (
                "api_key:crm",
                "GET /api/v1/units/{code}",
                Some("NOPE"),
                Some(404)
            ),
            ("api_key:crm", "POST /api/v1/units", None, Some(201)),
        ],
        "newest first; a call without a valid key is not anyone's"
    );
    server.stop().await;
    db.cleanup().await;
}
