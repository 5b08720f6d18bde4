//! A provider's API stand-in: a real HTTP server on port 0 that records every request and gives
//! one scripted answer, plus servers that never answer and addresses that refuse connections.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The number and text every sending test uses, so each error can be checked for leaking them.
pub const TO: &str = "+33612345678";
pub const TEXT: &str = "Votre avis sur la livraison ? Répondez de 0 à 10";
pub const FROM: &str = "+33757000000";
pub const CALLBACK: &str = "https://hearback.example/webhooks/main/status";

pub fn sms() -> crate::providers::OutboundSms<'static> {
    crate::providers::OutboundSms {
        from: FROM,
        to: TO,
        text: TEXT,
        status_callback: Some(CALLBACK),
    }
}

/// A client with short timeouts, so the silent-server tests finish quickly.
pub fn client() -> reqwest::Client {
    crate::providers::http_client_with_timeouts(Duration::from_secs(2), Duration::from_secs(3))
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// The path and query, as the adapter wrote them.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("the {name} header was sent"))
            .to_str()
            .unwrap()
    }

    /// The form body; a name sent twice fails the test.
    pub fn form(&self) -> BTreeMap<String, String> {
        assert_eq!(
            self.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        let mut fields = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(&self.body) {
            let previous = fields.insert(name.to_string(), value.to_string());
            assert!(previous.is_none(), "{name} sent twice");
        }
        fields
    }

    pub fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), "application/json");
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

pub struct StandIn {
    /// `http://127.0.0.1:<port>`, for `api_base_url`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    /// Answers every request with `status`, `headers` and `body` (JSON unless it is empty or
    /// does not parse as JSON).
    pub async fn answering(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let status = StatusCode::from_u16(status).unwrap();
        let mut answer_headers = HeaderMap::new();
        if serde_json::from_str::<Value>(body).is_ok() {
            answer_headers.insert("content-type", "application/json".parse().unwrap());
        }
        for (name, value) in headers {
            answer_headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let body = body.to_string();
        let record = seen.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, bytes: Bytes| {
                let record = record.clone();
                let answer = (status, answer_headers.clone(), body.clone());
                async move {
                    record.lock().unwrap().push(Seen {
                        method,
                        target: uri
                            .path_and_query()
                            .map_or_else(|| uri.path().to_string(), |p| p.to_string()),
                        headers,
                        body: bytes.to_vec(),
                    });
                    answer.into_response()
                }
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, seen }
    }

    /// The one request the adapter made.
    pub fn request(&self) -> Seen {
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "exactly one request");
        seen[0].clone()
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A server that accepts connections and never answers.
pub async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// An address nothing listens on: a port just released.
pub async fn refusing_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
