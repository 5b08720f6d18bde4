//! Sending, the part every adapter shares: the outbound message, what the provider answered, how
//! a failure is classified, the HTTP client, and reading an answer without trusting its size.
//!
//! A failure is [`SendError::Retryable`] when sending the same message again later may work (no
//! connection, a timeout, throttling, the provider's own errors) and [`SendError::Permanent`] when
//! it would fail the same way (the number, the account, the request). Where the provider says why
//! the number cannot receive SMS, the error carries the [`PermanentReason`] the contact's record
//! keeps.
//!
//! Error strings name the provider, the HTTP status and the provider's error code, never the
//! phone numbers, the text, or the provider's own error message (which often quotes the number).

use super::PermanentReason;
use axum::http::{HeaderMap, StatusCode, header};
use std::fmt;
use std::time::Duration;

/// What the caller asks to send.
#[derive(Clone, Copy)]
pub struct OutboundSms<'a> {
    /// One of the channel's senders: an E.164 number, a short code or an alphanumeric ID.
    pub from: &'a str,
    /// The customer's number, E.164 with its `+`.
    pub to: &'a str,
    pub text: &'a str,
    /// Where the provider should post delivery statuses (`/webhooks/<channel>/status`).
    pub status_callback: Option<&'a str>,
}

/// The recipient and the text are personal data: `Debug` keeps them out of logs.
impl fmt::Debug for OutboundSms<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundSms")
            .field("from", &self.from)
            .field("to", &super::mask(self.to))
            .field(
                "text",
                &format_args!("<{} chars>", self.text.chars().count()),
            )
            .field("status_callback", &self.status_callback)
            .finish()
    }
}

/// What the provider said when it accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The id its status callbacks will carry.
    pub provider_message_id: String,
    /// Parts the provider counted, when it says.
    pub segments: Option<u32>,
    /// The price the provider reported, as it wrote the amount, followed by a space and its
    /// currency code when it names one (`"0.0075 USD"`).
    pub cost: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later, after `retry_after` when the provider asked for a delay. The provider
    /// did not take the message (no connection, or it said no for now).
    #[error("temporary failure: {reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The request left but no answer came back (a timeout, a connection cut mid-answer): the
    /// provider may have accepted the message, so sending it again could send it twice.
    #[error("outcome unknown: {reason}")]
    OutcomeUnknown { reason: String },
    /// Sending this message again would fail the same way.
    #[error("refused: {reason}")]
    Permanent {
        reason: String,
        /// The provider's error code, as it wrote it.
        code: Option<String>,
        /// Set when the provider said why the number cannot receive it.
        permanent: Option<PermanentReason>,
    },
}

impl SendError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Retryable { .. })
    }
}

/// Connecting takes at most this long…
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// …and a whole call, answer read, at most this long.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(20);

/// The client every adapter sends with, with [`CONNECT_TIMEOUT`] and [`TOTAL_TIMEOUT`].
pub fn http_client() -> reqwest::Client {
    http_client_with_timeouts(CONNECT_TIMEOUT, TOTAL_TIMEOUT)
}

/// Redirects are not followed: a provider's send endpoint never redirects, and following one
/// would repeat a POST (and its credentials) somewhere unexpected.
pub fn http_client_with_timeouts(connect: Duration, total: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hearback/", env!("CARGO_PKG_VERSION")))
        .build()
        // Building fails only when the TLS backend cannot start, which no adapter survives.
        .expect("the HTTP client's TLS backend starts")
}

/// An answer longer than this is cut: no send answer comes close, and a hostile or broken
/// server must not fill memory.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A provider's answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends the request and reads the answer; a failure on the way is retryable, except a request
/// that could not be built (a malformed URL), which fails the same way every time.
pub async fn call(provider: &str, request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
    let mut response = request.send().await.map_err(|e| transport(provider, &e))?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport(provider, &e))?
    {
        let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn transport(provider: &str, error: &reqwest::Error) -> SendError {
    if error.is_builder() {
        return SendError::Permanent {
            reason: format!("{provider}: the request could not be built (check api_base_url)"),
            code: None,
            permanent: None,
        };
    }
    if error.is_connect() {
        return SendError::Retryable {
            reason: format!("{provider}: could not connect"),
            retry_after: None,
        };
    }
    let what = if error.is_timeout() {
        "timed out waiting for the answer; the provider may have accepted the message"
    } else {
        "the connection failed before the answer was read; the provider may have accepted the message"
    };
    SendError::OutcomeUnknown {
        reason: format!("{provider}: {what}"),
    }
}

/// The usual reading of an unsuccessful answer: throttling, server errors and a request timeout
/// are retryable (after `Retry-After` when the provider sets it); anything else is refused.
/// `code` is the provider's error code and `mapped` what the adapter's tables make of it:
/// a code the provider documents as passing makes even a 4xx retryable.
pub fn unsuccessful(
    provider: &str,
    answer: &Answer,
    code: Option<String>,
    mapped: Option<Outcome>,
) -> SendError {
    let status = answer.status;
    let described = match &code {
        Some(code) => format!(
            "{provider} answered HTTP {} with error {code}",
            status.as_u16()
        ),
        None => format!("{provider} answered HTTP {}", status.as_u16()),
    };
    let throttled = status == StatusCode::TOO_MANY_REQUESTS;
    if throttled
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || mapped == Some(Outcome::Retry)
    {
        return SendError::Retryable {
            reason: described,
            retry_after: retry_after(&answer.headers),
        };
    }
    SendError::Permanent {
        reason: described,
        code,
        permanent: match mapped {
            Some(Outcome::Refused(reason)) => Some(reason),
            _ => None,
        },
    }
}

/// What an adapter's table makes of a provider's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Retry,
    Refused(PermanentReason),
}

impl Outcome {
    /// The delivery-status tables the adapters already keep say the same things about a number.
    pub fn from_delivery(status: super::DeliveryStatus) -> Option<Self> {
        match status {
            super::DeliveryStatus::FailedTemporary => Some(Outcome::Retry),
            super::DeliveryStatus::FailedPermanent(reason) => Some(Outcome::Refused(reason)),
            _ => None,
        }
    }
}

/// A 2xx answer the adapter cannot read: the provider probably accepted the message, so sending
/// it again could send it twice. Its outcome is unknown: the send job asks the provider before
/// anything is sent again ([`super::Provider::find_sent`]).
pub fn unreadable(provider: &str, what: &'static str) -> SendError {
    SendError::OutcomeUnknown {
        reason: format!(
            "{provider} accepted the request but its answer is unreadable ({what}); the message \
             may have been sent"
        ),
    }
}

/// `Retry-After` as delay-seconds or as an HTTP date; a date counts from the answer's own `Date`
/// header when there is one, so that a skewed local clock does not stretch or cancel the delay.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = headers
        .get(header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d.trim()).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    let delay = at.with_timezone(&chrono::Utc) - now;
    Some(delay.to_std().unwrap_or(Duration::ZERO))
}

/// The provider's API address: the channel's `api_base_url` when set, else `default`, then
/// `path` (which starts with `/`).
pub fn endpoint(base: Option<&url::Url>, default: &str, path: &str) -> String {
    let base = base.map_or(default, url::Url::as_str);
    format!("{}{path}", base.trim_end_matches('/'))
}

/// A value percent-encoded for a URL path segment (an account id from the configuration).
pub fn path_segment(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A number for providers that want international digits without the `+`; a short code or an
/// alphanumeric sender is kept as written.
pub fn digits_only(address: &str) -> &str {
    match address.strip_prefix('+') {
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => digits,
        _ => address,
    }
}

/// A JSON number or numeric string as a count.
pub fn count(value: Option<&serde_json::Value>) -> Option<u32> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An amount and its currency, written as [`Sent::cost`] documents.
pub fn cost(amount: Option<&str>, currency: Option<&str>) -> Option<String> {
    let amount = amount.map(str::trim).filter(|a| !a.is_empty())?;
    // Twilio writes what it debits as a negative amount.
    let amount = super::wire::bounded(amount.strip_prefix('-').unwrap_or(amount));
    Some(match currency.map(str::trim).filter(|c| !c.is_empty()) {
        Some(currency) => format!("{amount} {}", super::wire::bounded(currency)),
        None => amount,
    })
}

/// A provider's id for the message, non-empty and bounded.
pub fn message_id(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) if !s.is_empty() && s.len() <= 200 => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
