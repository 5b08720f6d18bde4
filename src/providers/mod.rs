//! SMS provider adapters: verify a webhook's signature, read inbound messages and delivery
//! statuses out of it, each provider's vocabulary translated to one normalised set, and send an
//! SMS through the provider's REST API.
//!
//! One module per provider behind the [`Provider`] trait; [`build`] makes the adapter a
//! configured channel asks for. Webhook handling touches neither the network, the database nor
//! the clock: the caller passes the request as received and the current time, so every rule is
//! testable with the providers' published vectors. Sending ([`Provider::send`]) is the one
//! network call, made with the client the caller passes ([`http_client`]); it never touches the
//! database, and classifies each failure as retryable or permanent ([`SendError`]).
//!
//! The HTTP handler calls [`Provider::verify`] first and parses only what verified. The URL it
//! passes must be the public URL the provider called (scheme, host, port as the provider wrote
//! them, path and query), not the address the server listens on behind a proxy, because most
//! providers sign the URL.
//!
//! Signatures are compared in constant time; a secret never leaves [`crate::config::Secret`].
//! Errors say what was wrong (which header, which claim) but never echo a phone number or a
//! message body.

mod console;
mod http;
mod messagebird;
mod plivo;
mod send;
mod sinch;
mod telnyx;
mod twilio;
mod vonage;
mod wire;

pub use http::{
    SIGNATURE_HEADER as HTTP_SIGNATURE_HEADER, TIMESTAMP_HEADER as HTTP_TIMESTAMP_HEADER,
};
pub use send::{
    CONNECT_TIMEOUT, OutboundSms, SendError, Sent, TOTAL_TIMEOUT, http_client,
    http_client_with_timeouts,
};
pub use vonage::reassemble;

use crate::config::ChannelConfig;
use crate::time::Timestamp;
use axum::http::{HeaderMap, Method};
use futures::future::BoxFuture;
use std::fmt;

/// A webhook as the provider sent it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub method: &'a Method,
    /// The public URL the provider called, with its query string, exactly as configured there.
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    /// The raw body: signatures cover bytes, so it must not be re-serialised.
    pub body: &'a [u8],
}

pub trait Provider: Send + Sync {
    /// The provider's name, as in the `provider` configuration key.
    fn name(&self) -> &'static str;

    /// Checks the provider's signature in constant time; `now` bounds the replay window of the
    /// providers that sign a timestamp.
    fn verify(&self, request: &WebhookRequest<'_>, now: Timestamp) -> Result<(), VerifyError>;

    /// The customer messages an inbound webhook carries (usually one).
    fn parse_inbound(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundMessage>, ParseError>;

    /// The delivery statuses a status webhook carries (usually one).
    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError>;

    /// Sends one SMS through the provider's API; the id in [`Sent`] is the one its status
    /// callbacks will carry.
    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        sms: OutboundSms<'a>,
    ) -> BoxFuture<'a, Result<Sent, SendError>>;

    /// After a send whose outcome is unknown: asks the provider whether it has this message
    /// (same sender, recipient and text, created at or after `since`). Only providers whose API can
    /// list sent messages answer; the others say [`Lookup::Unsupported`].
    fn find_sent<'a>(
        &'a self,
        client: &'a reqwest::Client,
        sms: OutboundSms<'a>,
        since: Timestamp,
    ) -> BoxFuture<'a, Result<Lookup, SendError>> {
        let _ = (client, sms, since);
        Box::pin(std::future::ready(Ok(Lookup::Unsupported)))
    }
}

/// What the provider said about a message whose send outcome was unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It has the message: it was sent.
    Found(Sent),
    /// It has no such message: it never arrived, and sending it is safe.
    NotFound,
    /// The provider's API cannot tell.
    Unsupported,
}

/// An SMS from a customer.
#[derive(Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The provider's id of this message (or of this part): the de-duplication key.
    pub provider_message_id: String,
    /// The customer's number, E.164 with its `+` (added where the provider omits it).
    pub from: String,
    /// Our number (or sender ID) the customer wrote to, normalised like `from`.
    pub to: String,
    pub text: String,
    /// Set when the provider hands over a long SMS part by part (see [`reassemble`]).
    pub part: Option<PartInfo>,
}

/// One part of a concatenated SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Shared by the parts of one message from one sender.
    pub reference: String,
    /// 1-based position of this part.
    pub index: u16,
    pub total: u16,
}

/// Phone numbers and texts are personal data: `Debug` keeps them out of logs.
impl fmt::Debug for InboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundMessage")
            .field("provider_message_id", &self.provider_message_id)
            .field("from", &mask(&self.from))
            .field("to", &self.to)
            .field(
                "text",
                &format_args!("<{} chars>", self.text.chars().count()),
            )
            .field("part", &self.part)
            .finish()
    }
}

fn mask(number: &str) -> String {
    let kept: String = number.chars().take(4).collect();
    format!("{kept}…")
}

/// A delivery report for a message we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The id the provider gave the message when we sent it.
    pub provider_message_id: String,
    pub status: DeliveryStatus,
    /// The provider's error code, as it wrote it.
    pub error_code: Option<String>,
    /// The provider's own status word, kept for reports and debugging.
    pub raw_status: String,
}

/// Where a sent message stands, in one vocabulary for every provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Accepted by the provider, not yet handed to a carrier.
    Queued,
    /// Handed to a carrier; no handset confirmation yet.
    Sent,
    Delivered,
    /// Not delivered, for a reason that may pass (handset off, network error, expiry).
    FailedTemporary,
    /// Not delivered, and sending it again would fail the same way.
    FailedPermanent(PermanentReason),
}

/// Why a message can never be delivered; the first four are facts about the number, which the
/// contact's record keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermanentReason {
    /// The number does not exist or is not a valid mobile number.
    InvalidNumber,
    /// A fixed line: it cannot receive SMS.
    Landline,
    /// No route to the number (absent for good, not reachable by SMS).
    Unreachable,
    /// The customer opted out at the carrier (replied STOP to the provider, barred us).
    OptedOutAtCarrier,
    /// A carrier or recipient filter refused the message (spam, content, consent filter); the
    /// number itself may be fine.
    Blocked,
    /// Our side: account, configuration, message content, cancellation.
    Other,
}

impl PermanentReason {
    /// What the failure says about the number, as the contact's record keeps it: its number
    /// status (`invalid`, `landline`, `unreachable`), or an opt-out at the carrier
    /// ([`crate::storage::OPTED_OUT_AT_CARRIER`]); `None` when it says nothing about the number.
    pub fn number_status(self) -> Option<&'static str> {
        match self {
            PermanentReason::InvalidNumber => Some("invalid"),
            PermanentReason::Landline => Some("landline"),
            PermanentReason::Unreachable => Some("unreachable"),
            PermanentReason::OptedOutAtCarrier => Some(crate::storage::OPTED_OUT_AT_CARRIER),
            PermanentReason::Blocked | PermanentReason::Other => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {header} header is malformed: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: &'static str,
    },
    #[error("the {0} parameter is missing")]
    MissingParameter(&'static str),
    #[error("the {parameter} parameter is malformed: {reason}")]
    MalformedParameter {
        parameter: &'static str,
        reason: &'static str,
    },
    #[error("the request URL is malformed")]
    MalformedUrl,
    #[error("the body is malformed: {0}")]
    MalformedBody(&'static str),
    #[error("the signature does not match")]
    SignatureMismatch,
    #[error("the signature is {skew_secs} s from now, outside the {window_secs} s replay window")]
    OutsideReplayWindow { skew_secs: i64, window_secs: u64 },
    #[error("the signing algorithm '{0}' is not accepted")]
    UnsupportedAlgorithm(String),
    #[error("the token is malformed: {0}")]
    MalformedToken(&'static str),
    #[error("the token is not valid yet")]
    TokenNotYetValid,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token's {0} claim is missing")]
    MissingClaim(&'static str),
    #[error("the token's {0} claim does not match the request")]
    ClaimMismatch(&'static str),
    #[error("the body does not match the hash the provider signed")]
    BodyHashMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("the body is not JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("the {0} field is missing")]
    MissingField(&'static str),
    #[error("the {field} field is invalid: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    /// A webhook of another kind (a status on the inbound URL, an MMS, …), named as the provider
    /// names it.
    #[error("unexpected webhook kind '{0}'")]
    UnexpectedKind(String),
    #[error("unknown delivery status '{0}'")]
    UnknownStatus(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("channel key '{key}': {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The adapter of a configured channel.
pub fn build(config: &ChannelConfig) -> Result<Box<dyn Provider>, BuildError> {
    Ok(match config {
        ChannelConfig::Console(_) => Box::new(console::Console),
        ChannelConfig::Twilio(c) => Box::new(twilio::Twilio::new(c)),
        ChannelConfig::Vonage(c) => Box::new(vonage::Vonage::new(c)),
        ChannelConfig::Plivo(c) => Box::new(plivo::Plivo::new(c)),
        ChannelConfig::Telnyx(c) => Box::new(telnyx::Telnyx::new(c)?),
        ChannelConfig::Sinch(c) => Box::new(sinch::Sinch::new(c)),
        ChannelConfig::MessageBird(c) => Box::new(messagebird::MessageBird::new(c)),
        ChannelConfig::Http(c) => Box::new(http::HttpGateway::new(c)),
    })
}

#[cfg(test)]
mod tests;
