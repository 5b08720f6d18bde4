//! Events pushed to a CRM: a real HTTP receiver in the test checks every request's Standard
//! Webhooks signature (here, and with the specification's reference library from PyPI), goes
//! down and comes back, and must end with every event of a survey once, in order.

use crate::conversations::{
    answer_to_the_end, config, delivery_invitation, invite, sent_to_customer, wait_until,
};
use crate::support::{TestDb, TestServer, api_key};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    /// What the receiver answered.
    answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// The status answered while down.
    down: Option<u16>,
    /// Whether requests hang (answered after a minute, or when released).
    hang: bool,
    release: Arc<tokio::sync::Notify>,
    /// Requests that came in, answered or not yet.
    arrived: usize,
}

/// A CRM stand-in on 127.0.0.1: records every request and answers 204, or the `down` status.
#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    async fn start(down: Option<u16>) -> Receiver {
        Self::start_on("127.0.0.1", down).await
    }

    async fn start_on(ip: &str, down: Option<u16>) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            received: Vec::new(),
            down,
            hang: false,
            release: Arc::default(),
            arrived: 0,
        }));
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, state }
    }

    fn set_hanging(&self) {
        self.state.lock().unwrap().hang = true;
    }

    /// Answers the requests that hang, and every later one at once.
    fn release(&self) {
        let mut state = self.state.lock().unwrap();
        state.hang = false;
        state.release.notify_waiters();
    }

    fn set_down(&self, down: Option<u16>) {
        self.state.lock().unwrap().down = down;
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Event ids in the order they were first accepted, each once (what a receiver that
    /// de-duplicates on `webhook-id` keeps).
    fn accepted_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for r in self.received() {
            if r.answered < 300 && !ids.contains(&r.id) {
                ids.push(r.id);
            }
        }
        ids
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: String,
) -> AxumStatus {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let hang = {
        let mut state = state.lock().unwrap();
        state.arrived += 1;
        state.hang.then(|| Arc::clone(&state.release))
    };
    if let Some(release) = hang {
        let released = release.notified();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), released).await;
    }
    let mut state = state.lock().unwrap();
    let answered = state.down.unwrap_or(204);
    state.received.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        answered,
    });
    AxumStatus::from_u16(answered).unwrap()
}

/// The receiver's own check, written from the specification: HMAC-SHA256 over
/// `id.timestamp.body` with the base64-decoded part of the secret after `whsec_`.
fn signature_is_valid(r: &Received) -> bool {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = engine.encode(mac.finalize().into_bytes());
    r.signature
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

/// Checks every request with the reference library `standardwebhooks` (PyPI). CI installs it
/// and must run this check; elsewhere it is skipped, loudly, when Python lacks the library.
fn verified_by_the_reference_library(requests: &[Received]) {
    let has_library = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_library {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must verify webhooks with the standardwebhooks library (pip install standardwebhooks)"
        );
        eprintln!("skipping the standardwebhooks check: pip install standardwebhooks to run it");
        return;
    }
    let lines: String = requests
        .iter()
        .map(|r| {
            json!({
                "secret": SECRET,
                "headers": {
                    "webhook-id": r.id,
                    "webhook-timestamp": r.timestamp,
                    "webhook-signature": r.signature,
                },
                "body": r.body,
            })
            .to_string()
                + "\n"
        })
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/verify_standard_webhooks.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        requests.len().to_string()
    );
}

/// Quick retries so that a test sees a delivery fail, wait and die in a second or two.
fn webhooks_config(allow: &str, schedule: &str, endpoints: &str) -> String {
    format!(
        "[webhooks]\nallow_networks = [{allow}]\nretry_schedule = [{schedule}]\nfan_out_interval_ms = 20\ntimeout_secs = 2\n\n{endpoints}\n\
         [channels.console]\nprovider = \"console\"\n"
    )
}

fn endpoint(name: &str, url: &str, events: &str) -> String {
    format!(
        "[webhooks.endpoints.{name}]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nevents = [{events}]\n\n"
    )
}

async fn deliveries(client: &Client, server: &TestServer, key: &str, query: &str) -> Vec<Value> {
    let body: Value = client
        .get(server.url(&format!("/api/v1/webhook-deliveries?limit=500{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone()
}

async fn outbox_ids(db: &TestDb, event_type: Option<&str>) -> Vec<String> {
    db.storage
        .outbox_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| event_type.is_none_or(|t| e.event_type == t))
        .map(|e| e.event_id)
        .collect()
}

async fn every_event_of_a_survey_reaches_the_crm_once_in_order_across_an_outage(db: &TestDb) {
    let crm = Receiver::start(Some(500)).await;
    let reporting = Receiver::start(None).await;
    let toml = webhooks_config(
        "\"127.0.0.1/32\"",
        "\"30ms\", \"60ms\", \"120ms\", \"240ms\", \"480ms\", \"960ms\"",
        &(endpoint("crm", &crm.url, "")
            + &endpoint("reporting", &reporting.url, "\"response.completed\"")),
    );
    let server = TestServer::start(config(db, &toml), db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);

    let (status, invitation) =
        invite(&client, &server, &key, &delivery_invitation("order-wh-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{invitation}");
    // The CRM is down: the first event is tried, and tried again with the same id.
    wait_until("the CRM was called twice", || async {
        crm.received().len() >= 2
    })
    .await;
    crm.set_down(None);
    sent_to_customer(&client, &server, &key, 1).await;
    answer_to_the_end(db, (&client, &server), &invitation, "wh-1").await;

    let events = outbox_ids(db, None).await;
    assert!(events.len() >= 5, "{events:?}");
    wait_until("every event reached the CRM", || async {
        crm.accepted_ids().len() == events.len()
    })
    .await;
    assert_eq!(
        crm.accepted_ids(),
        events,
        "each event once, in the order they happened"
    );
    let received = crm.received();
    let first = &received[0];
    assert!(
        received[1..3].iter().all(|r| r.id == first.id),
        "the same webhook-id on every retry"
    );
    assert!(received.iter().all(signature_is_valid));
    let envelope: Value = serde_json::from_str(&received.last().unwrap().body).unwrap();
    assert_eq!(envelope["version"], 1);
    assert!(envelope["timestamp"].is_string() && envelope["data"].is_object());
    verified_by_the_reference_library(&received);

    // The reporting store wanted completions only.
    wait_until("the completion reached reporting", || async {
        !reporting.accepted_ids().is_empty()
    })
    .await;
    assert_eq!(
        reporting.accepted_ids(),
        outbox_ids(db, Some("response.completed")).await
    );

    // The API shows the failed attempts of the first delivery, then its success.
    let listed = deliveries(&client, &server, &key, "&state=delivered").await;
    assert_eq!(listed.len(), events.len() + 1);
    let first_delivery = listed
        .iter()
        .find(|d| d["event_id"] == first.id.as_str())
        .unwrap();
    let attempts = first_delivery["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 3, "{first_delivery}");
    assert_eq!(attempts[0]["status"], 500);
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 500")
    );
    assert_eq!(attempts.last().unwrap()["status"], 204);

    // Erasing the customer purges what was pushed about them; only the erasure itself is sent.
    let erased = client
        .delete(server.url(&format!(
            "/api/v1/contacts/{}",
            crate::conversations::CUSTOMER
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), StatusCode::OK);
    wait_until("the erasure reached the CRM", || async {
        crm.accepted_ids().len() == events.len() + 1
    })
    .await;
    let erasure: Value = serde_json::from_str(&crm.received().last().unwrap().body).unwrap();
    assert_eq!(erasure["type"], "contact.erased");
    let left = deliveries(&client, &server, &key, "").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["event_type"], "contact.erased");
    assert_eq!(
        outbox_ids(db, None).await,
        vec![erasure["id"].as_str().unwrap().to_string()]
    );
    server.stop().await;
}

async fn dead_deliveries_hold_nothing_back_and_are_replayed_in_order(db: &TestDb) {
    let crm = Receiver::start(Some(503)).await;
    let toml = webhooks_config(
        "\"127.0.0.1/32\"",
        "\"20ms\"",
        &endpoint("crm", &crm.url, ""),
    );
    let server = TestServer::start(config(db, &toml), db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let (_, invitation) = invite(&client, &server, &key, &delivery_invitation("order-wh-2")).await;
    sent_to_customer(&client, &server, &key, 1).await;
    answer_to_the_end(db, (&client, &server), &invitation, "wh-2").await;
    let events = outbox_ids(db, None).await;
    // Two attempts each, one event after the other: each dead one lets the next go.
    wait_until("every delivery is dead", || async {
        deliveries(&client, &server, &key, "&state=dead")
            .await
            .len()
            == events.len()
    })
    .await;
    let mut tried: Vec<String> = Vec::new();
    for r in crm.received() {
        if tried.last() != Some(&r.id) {
            tried.push(r.id);
        }
    }
    assert_eq!(
        tried, events,
        "tried in order, twice each, never interleaved"
    );
    assert_eq!(crm.received().len(), 2 * events.len());

    crm.set_down(None);
    let endpoints: Value = client
        .get(server.url("/api/v1/webhook-endpoints"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint_id = endpoints["endpoints"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(endpoints["endpoints"][0]["name"], "crm");
    let replay = |since: &str| {
        client
            .post(server.url(&format!(
                "/api/v1/webhook-endpoints/{endpoint_id}/replay?since={since}"
            )))
            .bearer_auth(&key)
            .send()
    };
    let response = replay("2000-01-01T00:00:00Z").await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["replayed"], events.len());
    wait_until("the replayed events arrived", || async {
        crm.accepted_ids().len() == events.len()
    })
    .await;
    assert_eq!(crm.accepted_ids(), events);
    assert_eq!(
        replay("not-a-date").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    // One delivery sent again on request, with its id; a pending one cannot be.
    let one = &deliveries(&client, &server, &key, "&state=delivered").await[0];
    let retry = |id: String| {
        client
            .post(server.url(&format!("/api/v1/webhook-deliveries/{id}/retry")))
            .bearer_auth(&key)
            .send()
    };
    let before = crm.received().len();
    let response = retry(one["id"].to_string()).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    wait_until("the retried delivery arrived", || async {
        crm.received().len() == before + 1
    })
    .await;
    assert_eq!(
        crm.received().last().unwrap().id,
        one["event_id"].as_str().unwrap()
    );
    assert_eq!(
        retry("999999999".into()).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        retry("nope".into()).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

async fn endpoints_on_private_addresses_are_refused_and_never_called(db: &TestDb) {
    let inside = Receiver::start(None).await;
    let named = inside.url.replace("127.0.0.1", "localhost");
    // Nothing allowed: a name that resolves to loopback is refused after resolution.
    let toml = webhooks_config("", "\"20ms\"", &endpoint("crm", &named, ""));
    let server = TestServer::start(config(db, &toml), db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    let (_, invitation) = invite(&client, &server, &key, &delivery_invitation("order-wh-3")).await;
    assert!(invitation["id"].is_string());
    wait_until("the first delivery is dead", || async {
        !deliveries(&client, &server, &key, "&state=dead")
            .await
            .is_empty()
    })
    .await;
    let dead = &deliveries(&client, &server, &key, "&state=dead").await[0];
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("private or reserved"),
        "{dead}"
    );
    assert!(
        inside.received().is_empty(),
        "the receiver was never called"
    );

    let create = |body: Value| {
        client
            .post(server.url("/api/v1/webhook-endpoints"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    for (body, field) in [
        (json!({ "url": "http://127.0.0.1:9/hooks" }), "url"),
        (json!({ "url": "http://10.0.0.7/hooks" }), "url"),
        (json!({ "url": "http://[::1]/hooks" }), "url"),
        (json!({ "url": "ftp://crm.example.com/" }), "url"),
        (json!({ "url": "not a url" }), "url"),
        (
            json!({ "url": "https://crm.example.com/", "event_types": ["case.open"] }),
            "event_types",
        ),
        (
            json!({ "url": "https://crm.example.com/", "secret": "hunter2" }),
            "secret",
        ),
    ] {
        let response = create(body.clone()).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]["details"]["fields"][field].is_string(),
            "{error}"
        );
    }
    let response = create(json!({ "url": "https://crm.example.com/hooks", "event_types": ["case.opened", "case.opened"] }))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["event_types"], json!(["case.opened"]));
    assert_eq!(created["source"], "api");
    let listed: Value = client
        .get(server.url("/api/v1/webhook-endpoints"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["endpoints"].as_array().unwrap().len(), 2);
    assert!(
        listed["endpoints"][1].get("secret").is_none(),
        "a secret is shown once"
    );
    server.stop().await;
}

/// A redirect is an attempt that failed: following it could lead anywhere.
async fn a_redirect_is_not_followed(db: &TestDb) {
    let elsewhere = Receiver::start_on("127.0.0.2", None).await;
    let app = {
        let target = elsewhere.url.clone();
        axum::Router::new().route(
            "/hooks",
            axum::routing::post(move || async move {
                (AxumStatus::TEMPORARY_REDIRECT, [("location", target)])
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let toml = webhooks_config("\"127.0.0.1/32\"", "\"20ms\"", &endpoint("crm", &url, ""));
    let server = TestServer::start(config(db, &toml), db.storage.clone()).await;
    let (client, key) = (Client::new(), api_key(&db.storage, "crm").await);
    invite(&client, &server, &key, &delivery_invitation("order-wh-4")).await;
    wait_until("the first delivery is dead", || async {
        !deliveries(&client, &server, &key, "&state=dead")
            .await
            .is_empty()
    })
    .await;
    let dead = &deliveries(&client, &server, &key, "&state=dead").await[0];
    assert_eq!(dead["last_status"], 307);
    assert!(
        dead["last_error"].as_str().unwrap().contains("redirected"),
        "{dead}"
    );
    assert!(elsewhere.received().is_empty());
    server.stop().await;
}

crate::both_backends!(
    every_event_of_a_survey_reaches_the_crm_once_in_order_across_an_outage,
    dead_deliveries_hold_nothing_back_and_are_replayed_in_order,
    endpoints_on_private_addresses_are_refused_and_never_called,
    a_redirect_is_not_followed,
    a_chain_cut_short_is_taken_up_where_it_stopped,
    a_job_out_of_turns_at_a_delivery_settled_elsewhere_hands_the_chain_on,
    a_delivery_whose_job_runs_out_of_attempts_is_given_up_and_the_chain_goes_on,
    a_retry_does_not_cut_short_the_wait_of_the_next_delivery,
    a_hanging_endpoint_does_not_hold_back_the_others,
    a_disabled_endpoint_s_deliveries_wait_a_day_before_they_are_dead,
);

/// An endpoint at `crm` and `count` events of one customer (STOP and START in turn), handed
/// out: its deliveries, oldest first (only the first has a job of its own), and the events' ids.
async fn a_customer_chain(
    db: &TestDb,
    crm: &Receiver,
    count: usize,
) -> (Vec<hearback::storage::DeliveryRecord>, Vec<String>) {
    use hearback::storage::NewEndpoint;
    db.storage
        .create_webhook_endpoint(
            &NewEndpoint {
                url: crm.url.clone(),
                secret: SECRET.into(),
                event_types: Vec::new(),
            },
            hearback::time::Timestamp::now(),
        )
        .await
        .unwrap();
    customer_events_handed_out(db, count).await
}

/// `count` events of one customer (STOP and START in turn), handed out to the endpoints there
/// are: their deliveries, oldest first, and the events' ids.
async fn customer_events_handed_out(
    db: &TestDb,
    count: usize,
) -> (Vec<hearback::storage::DeliveryRecord>, Vec<String>) {
    use hearback::storage::{ConsentChange, DeliveryFilter, NewInbound};
    let now = hearback::time::Timestamp::now();
    let phone = hearback::phone::Phone::parse("+33612345677", None).unwrap();
    for n in 0..count {
        let (body, change) = if n % 2 == 0 {
            ("STOP", ConsentChange::OptedOut)
        } else {
            ("START", ConsentChange::OptedIn)
        };
        db.storage
            .receive_inbound(&NewInbound {
                channel: "console",
                provider_message_id: &format!("chain-{n}"),
                to: "console",
                from: Some(&phone),
                body,
                consent: Some(change),
                received_at: now,
            })
            .await
            .unwrap();
    }
    let events = outbox_ids(db, None).await;
    assert_eq!(events.len(), count, "{events:?}");
    // On PostgreSQL another test's server may hold the fan-out's lock (one database, a schema
    // per test) for a moment: then none are handed out, and it is tried again.
    let mut handed = 0;
    for _ in 0..500 {
        handed += db.storage.fan_out_events(1_000, now).await.unwrap();
        if handed == count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(handed, count);
    let mut chain = db
        .storage
        .webhook_deliveries(&DeliveryFilter {
            limit: 1_000,
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    chain.reverse();
    assert_eq!(chain.len(), count);
    (chain, events)
}

/// Records what another run made of `delivery`: `next`, without handing on.
async fn settled_elsewhere(
    db: &TestDb,
    delivery: &hearback::storage::DeliveryRecord,
    next: hearback::storage::DeliveryNext,
) {
    let now = hearback::time::Timestamp::now();
    let to_send = db
        .storage
        .webhook_delivery_to_send(delivery.id)
        .await
        .unwrap()
        .unwrap();
    let result = hearback::storage::AttemptResult {
        status: Some(
            if matches!(next, hearback::storage::DeliveryNext::Delivered) {
                204
            } else {
                503
            },
        ),
        error: None,
        duration_ms: 1,
    };
    assert!(
        db.storage
            .record_webhook_attempt(&to_send, &result, (next, false), now)
            .await
            .unwrap()
    );
}

/// The delivery job's handler as a server builds it, for 127.0.0.1, retrying after 30 ms.
fn delivery_handler(db: &TestDb) -> hearback::jobs::webhooks::DeliverWebhook {
    let policy = Arc::new(hearback::webhooks::AddressPolicy::new(vec![
        "127.0.0.1/32".parse().unwrap(),
    ]));
    hearback::jobs::webhooks::DeliverWebhook {
        storage: db.storage.clone(),
        client: hearback::jobs::webhooks::webhook_client(
            Arc::clone(&policy),
            std::time::Duration::from_secs(5),
        )
        .unwrap(),
        policy,
        schedule: hearback::webhooks::RetrySchedule::new(vec![std::time::Duration::from_millis(
            30,
        )]),
        clock: hearback::time::Clock::system(),
        chain_turns: hearback::jobs::webhooks::CHAIN_TURNS,
        gates: hearback::jobs::webhooks::EndpointGates::new(
            hearback::jobs::webhooks::MAX_IN_FLIGHT_PER_ENDPOINT,
            std::time::Duration::from_secs(5),
        ),
    }
}

/// The job queued under `key`, as a worker claims it.
async fn job_keyed(db: &TestDb, key: &str) -> hearback::storage::ClaimedJob {
    let job = db
        .storage
        .job_by_key(key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no job {key}"));
    hearback::storage::ClaimedJob {
        id: job.id,
        kind: job.kind,
        payload: job.payload,
        attempt: 1,
        max_attempts: 20,
    }
}

async fn state_of(db: &TestDb, delivery: i64) -> String {
    db.storage
        .webhook_delivery(delivery)
        .await
        .unwrap()
        .unwrap()
        .state
}

/// A delivery job that went down its customer's chain and stopped after the first delivery (its
/// worker died) left the next two without a job of their own. Run again, it finds its delivery
/// settled and carries on from the chain's head: the CRM gets the second and third events, in
/// order, and never the first again.
async fn a_chain_cut_short_is_taken_up_where_it_stopped(db: &TestDb) {
    let crm = Receiver::start(None).await;
    let (chain, events) = a_customer_chain(db, &crm, 3).await;
    // What the job did before it died: the first delivery, settled without handing on.
    settled_elsewhere(db, &chain[0], hearback::storage::DeliveryNext::Delivered).await;

    let toml = webhooks_config("\"127.0.0.1/32\"", "\"30ms\"", "");
    let server = TestServer::start(config(db, &toml), db.storage.clone()).await;
    wait_until("the rest of the chain is delivered", || async {
        crm.accepted_ids().len() == 2
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(crm.accepted_ids(), events[1..], "the rest, in order");
    assert_eq!(crm.received().len(), 2, "the first event is not sent again");
    for delivery in &chain {
        assert_eq!(
            state_of(db, delivery.id).await,
            "delivered",
            "delivery {}",
            delivery.id
        );
    }
    server.stop().await;
}

/// A job goes down its customer's chain so many deliveries at most (fifty; one here). When the
/// last it reaches was settled by another run meanwhile, the job stops at the chain's next
/// delivery without attempting it: that one gets a job of its own, or the customer's later
/// events would never go.
async fn a_job_out_of_turns_at_a_delivery_settled_elsewhere_hands_the_chain_on(db: &TestDb) {
    use hearback::jobs::JobHandler;
    let crm = Receiver::start(None).await;
    let (chain, _) = a_customer_chain(db, &crm, 3).await;
    settled_elsewhere(db, &chain[0], hearback::storage::DeliveryNext::Delivered).await;
    let job = job_keyed(db, &format!("webhook.deliver:{}:0", chain[0].id)).await;
    let handler = hearback::jobs::webhooks::DeliverWebhook {
        chain_turns: 1,
        ..delivery_handler(db)
    };
    handler.run(job).await.unwrap();
    assert!(crm.received().is_empty(), "{:?}", crm.received());
    let next = db
        .storage
        .job_by_key(&format!("webhook.deliver:{}:0", chain[1].id))
        .await
        .unwrap();
    assert_eq!(
        next.map(|j| j.state),
        Some(hearback::storage::JobState::Pending),
        "the chain's head has its job"
    );
}

/// An endpoint disabled by an instance whose configuration lacks it (a rolling deploy) keeps
/// its pending deliveries for a day, without an attempt; disabled for longer, they are dead.
async fn a_disabled_endpoint_s_deliveries_wait_a_day_before_they_are_dead(db: &TestDb) {
    use hearback::jobs::JobHandler;
    use hearback::storage::NewEndpoint;
    let crm = Receiver::start(None).await;
    let now = hearback::time::Timestamp::now();
    let configured = [(
        "crm".to_string(),
        NewEndpoint {
            url: crm.url.clone(),
            secret: SECRET.into(),
            event_types: Vec::new(),
        },
    )];
    db.storage
        .sync_configured_endpoints(&configured, now)
        .await
        .unwrap();
    let (chain, _) = customer_events_handed_out(db, 2).await;
    // An instance without it starts.
    db.storage
        .sync_configured_endpoints(&[], now)
        .await
        .unwrap();
    let job = job_keyed(db, &format!("webhook.deliver:{}:0", chain[0].id)).await;
    let outcome = delivery_handler(db).run(job.clone()).await;
    assert!(
        matches!(outcome, Err(hearback::jobs::JobFailure::Later(..))),
        "{outcome:?}"
    );
    assert_eq!(state_of(db, chain[0].id).await, "pending");
    assert!(crm.received().is_empty());
    // Disabled two days ago: dead.
    db.storage
        .sync_configured_endpoints(&configured, now)
        .await
        .unwrap();
    let two_days_ago = now - std::time::Duration::from_secs(2 * 86_400);
    db.storage
        .sync_configured_endpoints(&[], two_days_ago)
        .await
        .unwrap();
    delivery_handler(db).run(job).await.unwrap();
    assert_eq!(state_of(db, chain[0].id).await, "dead");
    assert!(crm.received().is_empty());
}

/// A CRM that hangs holds some of the webhook workers, not all: another endpoint still gets
/// every event while the first one's requests wait for their timeout.
async fn a_hanging_endpoint_does_not_hold_back_the_others(db: &TestDb) {
    use hearback::storage::{ConsentChange, NewInbound};
    let hanging = Receiver::start(None).await;
    hanging.set_hanging();
    let healthy = Receiver::start(None).await;
    let toml = webhooks_config(
        "\"127.0.0.1/32\"",
        "\"30ms\"",
        &(endpoint("hanging", &hanging.url, "") + &endpoint("healthy", &healthy.url, "")),
    )
    .replace("timeout_secs = 2", "timeout_secs = 50");
    let server = TestServer::start(config(db, &toml), db.storage.clone()).await;
    // Twenty customers, one event each: forty deliveries, every one the head of its chain.
    let now = hearback::time::Timestamp::now();
    for n in 0..20 {
        let phone = hearback::phone::Phone::parse(&format!("+336123456{n:02}"), None).unwrap();
        db.storage
            .receive_inbound(&NewInbound {
                channel: "console",
                provider_message_id: &format!("hang-{n}"),
                to: "console",
                from: Some(&phone),
                body: "STOP",
                consent: Some(ConsentChange::OptedOut),
                received_at: now,
            })
            .await
            .unwrap();
    }
    wait_until("the healthy endpoint has every event", || async {
        healthy.accepted_ids().len() == 20
    })
    .await;
    let arrived = hanging.state.lock().unwrap().arrived;
    assert!(
        (1..=hearback::jobs::webhooks::MAX_IN_FLIGHT_PER_ENDPOINT).contains(&arrived),
        "{arrived} requests to the hanging endpoint"
    );
    hanging.release();
    server.stop().await;
}

/// A job out of attempts (its worker died each time) is abandoned: the delivery its chain was
/// at is given up (dead, to be replayed), and the chain goes on without it.
async fn a_delivery_whose_job_runs_out_of_attempts_is_given_up_and_the_chain_goes_on(db: &TestDb) {
    use hearback::jobs::JobHandler;
    let crm = Receiver::start(None).await;
    let (chain, events) = a_customer_chain(db, &crm, 3).await;
    let now = hearback::time::Timestamp::now();
    let mut claimed = db
        .storage
        .claim_jobs(
            "test",
            &["webhook.deliver"],
            10,
            std::time::Duration::from_secs(60),
            now,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the chain's one job");
    let job = claimed.pop().unwrap();
    delivery_handler(db).abandon(job.clone()).await.unwrap();
    assert_eq!(state_of(db, chain[0].id).await, "dead");
    assert!(crm.received().is_empty(), "given up, not attempted");
    // The runner buries the job; a server takes the rest of the chain.
    assert!(
        db.storage
            .bury_job(job.id, "test", "out of attempts", now)
            .await
            .unwrap()
    );
    let toml = webhooks_config("\"127.0.0.1/32\"", "\"30ms\"", "");
    let server = TestServer::start(config(db, &toml), db.storage.clone()).await;
    wait_until("the rest of the chain is delivered", || async {
        crm.accepted_ids().len() == 2
    })
    .await;
    assert_eq!(crm.accepted_ids(), events[1..], "the rest, in order");
    server.stop().await;
}

/// Retrying a customer's delivered event sends that event, and not, ahead of its time, the
/// customer's next one, which waits for its own next try.
async fn a_retry_does_not_cut_short_the_wait_of_the_next_delivery(db: &TestDb) {
    use hearback::jobs::JobHandler;
    use hearback::storage::DeliveryNext;
    let crm = Receiver::start(None).await;
    let (chain, events) = a_customer_chain(db, &crm, 2).await;
    let now = hearback::time::Timestamp::now();
    settled_elsewhere(db, &chain[0], DeliveryNext::Delivered).await;
    let in_an_hour = now + std::time::Duration::from_secs(3_600);
    settled_elsewhere(db, &chain[1], DeliveryNext::RetryAt(in_an_hour)).await;
    db.storage
        .retry_webhook_delivery(chain[0].id, now)
        .await
        .unwrap();
    let job = job_keyed(db, &format!("webhook.deliver:{}:1", chain[0].id)).await;
    // The job comes back when the next delivery's wait is over.
    let outcome = delivery_handler(db).run(job).await;
    assert!(
        matches!(outcome, Err(hearback::jobs::JobFailure::Later(wait, _)) if wait > std::time::Duration::from_secs(3_000)),
        "{outcome:?}"
    );
    assert_eq!(crm.accepted_ids(), events[..1], "the retried event only");
    assert_eq!(state_of(db, chain[1].id).await, "pending");
}
