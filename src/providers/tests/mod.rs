//! Every provider against its published vectors and payloads (`fixtures/providers/`), tampering,
//! replay windows, malformed input, and the status mappings.

mod conversations;
mod gateway;
mod messagebird;
mod plivo;
mod robustness;
mod sending;
mod sinch;
mod stand_in;
mod telnyx;
mod twilio;
mod vonage;

use super::*;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::Value;

/// A fixture file of `fixtures/providers/`, embedded at compile time.
macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/providers/",
            $path
        ))
    };
}
pub(crate) use fixture;

pub fn json_fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

pub fn provider(channel: Value) -> Box<dyn Provider> {
    let config: ChannelConfig = serde_json::from_value(channel).expect("a valid channel");
    build(&config).expect("the channel builds")
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(seconds * 1000).unwrap()
}

/// A form body from a JSON object of strings (or arrays of strings, sent as repeated names).
pub fn form(params: &Value) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params.as_object().expect("params are an object") {
        match value {
            Value::Array(values) => {
                for v in values {
                    serializer.append_pair(name, v.as_str().unwrap());
                }
            }
            v => {
                serializer.append_pair(name, v.as_str().unwrap());
            }
        }
    }
    serializer.finish()
}

/// An owned request, so tests can tamper with a copy.
#[derive(Clone)]
pub struct Owned {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Owned {
    pub fn post(url: &str, headers: HeaderMap, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: Method::POST,
            url: url.to_string(),
            headers,
            body: body.into(),
        }
    }

    pub fn request(&self) -> WebhookRequest<'_> {
        WebhookRequest {
            method: &self.method,
            url: &self.url,
            headers: &self.headers,
            body: &self.body,
        }
    }

    pub fn verify(&self, provider: &dyn Provider, now: Timestamp) -> Result<(), VerifyError> {
        provider.verify(&self.request(), now)
    }
}

/// What a provider signs, so each can be altered by one byte.
#[derive(Debug, Clone, Copy)]
pub enum Signed {
    Body,
    Url,
    Header(&'static str),
}

/// One character of `text` replaced by another of the same kind, away from its ends.
fn change_one_character(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let middle = chars.len() / 2;
    let position = (middle..chars.len())
        .chain(0..middle)
        .find(|&i| chars[i].is_ascii_alphanumeric())
        .expect("something to change");
    chars[position] = match chars[position] {
        'z' => 'a',
        'Z' => 'A',
        '9' => '0',
        c => char::from(c as u8 + 1),
    };
    chars.into_iter().collect()
}

/// The request verifies as given, and fails once any signed part changes by one byte.
pub fn assert_tampering_fails(
    provider: &dyn Provider,
    valid: &Owned,
    now: Timestamp,
    signed: &[Signed],
) {
    assert_eq!(
        valid.verify(provider, now),
        Ok(()),
        "the untouched request verifies"
    );
    for part in signed {
        let mut changed = valid.clone();
        match part {
            Signed::Body => {
                let last = changed.body.len() - 2;
                changed.body[last] ^= 0x01;
            }
            Signed::Url => {
                let host = changed.url.find("://").unwrap() + 3;
                let mut bytes = changed.url.into_bytes();
                bytes[host] = if bytes[host] == b'x' { b'y' } else { b'x' };
                changed.url = String::from_utf8(bytes).unwrap();
            }
            Signed::Header(name) => {
                let value = changed.headers[*name].to_str().unwrap().to_string();
                changed.headers.insert(
                    *name,
                    HeaderValue::from_str(&change_one_character(&value)).unwrap(),
                );
            }
        }
        assert!(
            changed.verify(provider, now).is_err(),
            "{part:?} changed by one byte still verifies"
        );
    }
}
