//! What the adapters share: reading headers, forms and JSON fields without panicking on hostile
//! input, keyed hashes, constant-time comparison, replay windows and HMAC-signed JWTs.

use super::{ParseError, VerifyError, WebhookRequest};
use crate::time::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

/// Five minutes either way: what the providers' SDKs allow for clock skew and delivery delay.
pub const REPLAY_WINDOW_SECS: u64 = 300;

/// A header's value as text; a header sent twice is refused, since it is ambiguous which one
/// was signed.
pub fn header<'r>(
    request: &WebhookRequest<'r>,
    name: &'static str,
) -> Result<&'r str, VerifyError> {
    let mut values = request.headers.get_all(name).iter();
    let value = values.next().ok_or(VerifyError::MissingHeader(name))?;
    if values.next().is_some() {
        return Err(VerifyError::MalformedHeader {
            header: name,
            reason: "sent more than once",
        });
    }
    let text = value.to_str().map_err(|_| VerifyError::MalformedHeader {
        header: name,
        reason: "not visible ASCII",
    })?;
    Ok(text.trim())
}

/// Name/value pairs of a form body or query string, in order, percent-decoded.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn from_form(body: &[u8]) -> Result<Self, ParseError> {
        std::str::from_utf8(body).map_err(|_| ParseError::NotUtf8)?;
        Ok(Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    pub fn from_query(url: &str) -> Self {
        let query = query_of(url).unwrap_or("");
        Self(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &'static str) -> Result<&str, ParseError> {
        self.get(name).ok_or(ParseError::MissingField(name))
    }

    /// Like `require`, but an empty value counts as missing.
    pub fn require_non_empty(&self, name: &'static str) -> Result<&str, ParseError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or(ParseError::MissingField(name))
    }
}

/// The query string of a URL (without `?` and fragment), if it has one.
pub fn query_of(url: &str) -> Option<&str> {
    let without_fragment = url.split('#').next().unwrap_or(url);
    without_fragment.split_once('?').map(|(_, q)| q)
}

/// The URL up to its query string or fragment, byte for byte.
pub fn without_query(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

pub fn json(body: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() || e.is_syntax() || e.is_eof() {
            ParseError::NotJson {
                line: e.line(),
                column: e.column(),
            }
        } else {
            ParseError::NotUtf8
        }
    })
}

/// A string at a JSON pointer; `name` is the field's name in errors.
pub fn json_str<'v>(
    value: &'v Value,
    pointer: &str,
    name: &'static str,
) -> Result<&'v str, ParseError> {
    match value.pointer(pointer) {
        None | Some(Value::Null) => Err(ParseError::MissingField(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ParseError::InvalidField {
            field: name,
            reason: "not a string",
        }),
    }
}

/// A code the provider writes as a number or a string, as text.
pub fn json_code(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// E.164 with its `+`: several providers send international numbers as bare digits. Anything
/// else (an alphanumeric sender, a short code) is kept as written.
pub fn normalise_address(raw: &str) -> String {
    let raw = raw.trim();
    if (8..=15).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{raw}")
    } else {
        raw.to_string()
    }
}

/// A provider's word, bounded so that a hostile value cannot bloat an error or a log line.
pub fn bounded(raw: &str) -> String {
    raw.chars().take(40).collect()
}

pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    keyed::<Hmac<sha1::Sha1>>(key, parts)
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    keyed::<Hmac<Sha256>>(key, parts)
}

pub fn hmac_sha384(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    keyed::<Hmac<Sha384>>(key, parts)
}

pub fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    keyed::<Hmac<Sha512>>(key, parts)
}

pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    keyed::<Hmac<md5::Md5>>(key, parts)
}

fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn decode_base64(value: &str, header: &'static str) -> Result<Vec<u8>, VerifyError> {
    STANDARD
        .decode(value)
        .map_err(|_| VerifyError::MalformedHeader {
            header,
            reason: "not base64",
        })
}

/// Unix seconds from a header.
pub fn unix_seconds(value: &str, header: &'static str) -> Result<i64, VerifyError> {
    value.parse().map_err(|_| VerifyError::MalformedHeader {
        header,
        reason: "not a number of seconds",
    })
}

/// Accepts a signing time at most `window_secs` away from `now`, either way: a replayed request
/// is old, and a clock far ahead is as suspect as one far behind.
pub fn within_window(
    signed_at_secs: i64,
    now: Timestamp,
    window_secs: u64,
) -> Result<(), VerifyError> {
    let skew_secs = (now.as_millis() / 1000).saturating_sub(signed_at_secs);
    if skew_secs.unsigned_abs() > window_secs {
        Err(VerifyError::OutsideReplayWindow {
            skew_secs,
            window_secs,
        })
    } else {
        Ok(())
    }
}

/// The HMAC algorithms a JWT may name; `none` and the public-key ones are refused, since only a
/// shared secret is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Hs384,
    Hs512,
}

/// Checks an HMAC-signed JWT (`header.claims.signature`, base64url without padding) and returns
/// its claims. Only the algorithms in `accepted` pass; the token's own header chooses among them.
pub fn verify_jwt(
    token: &str,
    secret: &[u8],
    accepted: &[JwtAlgorithm],
) -> Result<Map<String, Value>, VerifyError> {
    let mut pieces = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(VerifyError::MalformedToken("not three dot-separated parts"));
    };
    let decode = |part: &str, what: &'static str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| VerifyError::MalformedToken(what))
    };
    let header_json: Value = serde_json::from_slice(&decode(header, "header is not base64url")?)
        .map_err(|_| VerifyError::MalformedToken("header is not JSON"))?;
    let alg = header_json
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(VerifyError::MalformedToken("header has no alg"))?;
    let algorithm = match alg {
        "HS256" => JwtAlgorithm::Hs256,
        "HS384" => JwtAlgorithm::Hs384,
        "HS512" => JwtAlgorithm::Hs512,
        other => return Err(VerifyError::UnsupportedAlgorithm(bounded(other))),
    };
    if !accepted.contains(&algorithm) {
        return Err(VerifyError::UnsupportedAlgorithm(alg.to_string()));
    }
    let signed = &token[..header.len() + 1 + claims.len()];
    let expected = match algorithm {
        JwtAlgorithm::Hs256 => hmac_sha256(secret, &[signed.as_bytes()]),
        JwtAlgorithm::Hs384 => hmac_sha384(secret, &[signed.as_bytes()]),
        JwtAlgorithm::Hs512 => hmac_sha512(secret, &[signed.as_bytes()]),
    };
    if !ct_eq(&decode(signature, "signature is not base64url")?, &expected) {
        return Err(VerifyError::SignatureMismatch);
    }
    match serde_json::from_slice(&decode(claims, "claims are not base64url")?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(VerifyError::MalformedToken("claims are not a JSON object")),
    }
}

/// A numeric date claim (`exp`, `nbf`, `iat`), in seconds.
pub fn claim_seconds(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(VerifyError::MalformedToken("a date claim is not a number")),
    }
}

/// Compares a hex digest claim with the digest of what arrived, ignoring the hex case.
pub fn hex_claim_matches(claim: &str, digest: &[u8]) -> bool {
    ct_eq(
        claim.to_ascii_lowercase().as_bytes(),
        hex::encode(digest).as_bytes(),
    )
}
