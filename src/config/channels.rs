//! `[channels.<name>]`: provider accounts. The database knows a channel by its name only; its
//! credentials stay in the configuration.
//!
//! Every channel table has `provider` (which adapter), the keys its provider needs to verify
//! webhooks (and later to send), and the keys every channel shares: `senders`, `countries`,
//! `messages_per_second`, `cost_per_segment`, `fallback` and `api_base_url`. The shared keys are
//! repeated in each variant (by the `channel!` macro) rather than flattened, because serde cannot
//! refuse unknown keys through `#[serde(flatten)]` and an unknown key must be an error that names it.

use super::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::num::NonZeroU32;
use url::Url;

/// A channel's name: it appears in webhook URLs, so it is kept to `[a-z0-9_-]`, 1 to 64 long.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(raw.to_string()))
        } else {
            Err(format!(
                "invalid channel name '{raw}': use 1 to 64 of a-z, 0-9, '_' and '-'"
            ))
        }
    }

    pub fn console() -> Self {
        Self("console".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ChannelName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ChannelName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What a channel sends from: an E.164 number (`+33757000000`), a short code (3 to 8 digits) or
/// an alphanumeric sender ID (1 to 11 letters, digits or spaces, at least one letter).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sender(String);

impl Sender {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let e164 = raw.strip_prefix('+').is_some_and(|digits| {
            (2..=15).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0')
        });
        let short_code = (3..=8).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit());
        let alphanumeric = (1..=11).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
            && raw.bytes().any(|b| b.is_ascii_alphabetic());
        if e164 || short_code || alphanumeric {
            Ok(Self(raw.to_string()))
        } else {
            Err(format!(
                "invalid sender '{raw}': use an E.164 number (+33757000000), a short code or an \
                 alphanumeric sender of at most 11 characters"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Numbers and short codes can receive the customer's answer; an alphanumeric sender ID
    /// cannot (the customer's phone has nowhere to reply to).
    pub fn receives_replies(&self) -> bool {
        !self.0.bytes().any(|b| b.is_ascii_alphabetic())
    }
}

impl Serialize for Sender {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sender {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Sender::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case (`FR`, `BE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(format!(
                "invalid country '{raw}': use an ISO 3166-1 alpha-2 code such as FR"
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters, checked in `parse`.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        CountryCode::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The keys every channel has, borrowed from whichever variant holds them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelCommon<'a> {
    /// Numbers or sender IDs the channel sends from.
    pub senders: &'a [Sender],
    /// Countries whose numbers this channel serves; empty means every country.
    pub countries: &'a [CountryCode],
    /// hearback's own pacing of this channel; `None` leaves pacing to the provider.
    pub messages_per_second: Option<NonZeroU32>,
    /// The price of one SMS segment, in the currency reports use.
    pub cost_per_segment: Option<f64>,
    /// The channel that takes over when this one fails.
    pub fallback: Option<&'a ChannelName>,
    /// Overrides the provider's API address (tests, regional endpoints, proxies).
    pub api_base_url: Option<&'a Url>,
}

/// Declares a channel variant's struct: its own keys, then the keys every channel has.
macro_rules! channel {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            #[serde(default)]
            pub senders: Vec<Sender>,
            #[serde(default)]
            pub countries: Vec<CountryCode>,
            /// Checked at load time (with the key named): 0 is refused.
            #[serde(default)]
            pub messages_per_second: Option<u32>,
            #[serde(default)]
            pub cost_per_segment: Option<f64>,
            #[serde(default)]
            pub fallback: Option<ChannelName>,
            #[serde(default)]
            pub api_base_url: Option<Url>,
        }

        impl $name {
            pub fn common(&self) -> ChannelCommon<'_> {
                ChannelCommon {
                    senders: &self.senders,
                    countries: &self.countries,
                    messages_per_second: self.messages_per_second.and_then(NonZeroU32::new),
                    cost_per_segment: self.cost_per_segment,
                    fallback: self.fallback.as_ref(),
                    api_base_url: self.api_base_url.as_ref(),
                }
            }
        }
    };
}

/// One provider account, chosen by its `provider` key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum ChannelConfig {
    /// Development: outbound messages are logged and kept for inspection, nothing is sent.
    Console(ConsoleChannel),
    Twilio(TwilioChannel),
    Vonage(VonageChannel),
    Plivo(PlivoChannel),
    Telnyx(TelnyxChannel),
    Sinch(SinchChannel),
    #[serde(rename = "messagebird")]
    MessageBird(MessageBirdChannel),
    /// Any gateway that speaks hearback's own signed webhook format (see `providers::http`).
    Http(HttpChannel),
}

impl ChannelConfig {
    pub fn provider(&self) -> &'static str {
        match self {
            ChannelConfig::Console(_) => "console",
            ChannelConfig::Twilio(_) => "twilio",
            ChannelConfig::Vonage(_) => "vonage",
            ChannelConfig::Plivo(_) => "plivo",
            ChannelConfig::Telnyx(_) => "telnyx",
            ChannelConfig::Sinch(_) => "sinch",
            ChannelConfig::MessageBird(_) => "messagebird",
            ChannelConfig::Http(_) => "http",
        }
    }

    /// The configured value, 0 included, for validation; [`Self::common`] holds the usable one.
    pub(super) fn messages_per_second(&self) -> Option<u32> {
        match self {
            ChannelConfig::Console(c) => c.messages_per_second,
            ChannelConfig::Twilio(c) => c.messages_per_second,
            ChannelConfig::Vonage(c) => c.messages_per_second,
            ChannelConfig::Plivo(c) => c.messages_per_second,
            ChannelConfig::Telnyx(c) => c.messages_per_second,
            ChannelConfig::Sinch(c) => c.messages_per_second,
            ChannelConfig::MessageBird(c) => c.messages_per_second,
            ChannelConfig::Http(c) => c.messages_per_second,
        }
    }

    pub fn common(&self) -> ChannelCommon<'_> {
        match self {
            ChannelConfig::Console(c) => c.common(),
            ChannelConfig::Twilio(c) => c.common(),
            ChannelConfig::Vonage(c) => c.common(),
            ChannelConfig::Plivo(c) => c.common(),
            ChannelConfig::Telnyx(c) => c.common(),
            ChannelConfig::Sinch(c) => c.common(),
            ChannelConfig::MessageBird(c) => c.common(),
            ChannelConfig::Http(c) => c.common(),
        }
    }
}

channel! {
    /// The console channel sends from its first sender, `+33600000000` when none is configured.
    #[derive(Default)]
    ConsoleChannel {}
}

impl ConsoleChannel {
    pub const DEFAULT_SENDER: &'static str = "+33600000000";
}

channel! {
    TwilioChannel {
        /// `AC…`: the account the webhooks belong to.
        account_sid: String,
        /// Signs every webhook (HMAC-SHA1) and authenticates API calls.
        auth_token: Secret,
    }
}

channel! {
    VonageChannel {
        api_key: String,
        /// Authenticates API calls (sending); webhooks are verified with `signature_secret`.
        api_secret: Secret,
        /// The account's signature secret: signs SMS API webhooks and Messages API JWTs.
        signature_secret: Secret,
        /// How SMS API webhooks are signed, as set in the Vonage dashboard.
        #[serde(default)]
        signature_method: VonageSignatureMethod,
        /// Which Vonage API delivers this channel's webhooks.
        #[serde(default)]
        api: VonageApi,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VonageSignatureMethod {
    /// Plain MD5 of the parameters and the secret (Vonage's default, and its weakest).
    #[default]
    Md5Hash,
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VonageApi {
    /// The SMS API: form or query parameters signed with a `sig` parameter.
    #[default]
    Sms,
    /// The Messages API: JSON bodies signed with a JWT in `Authorization`. Delivery receipts
    /// of the texts hearback sends (through the SMS API) may come in the SMS API's form, signed
    /// with `sig` by `signature_method`: they are taken too.
    Messages,
}

channel! {
    PlivoChannel {
        auth_id: String,
        /// Signs every webhook and authenticates API calls.
        auth_token: Secret,
        /// Which signature header to require.
        #[serde(default)]
        signature_version: PlivoSignatureVersion,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlivoSignatureVersion {
    /// `X-Plivo-Signature-V2`: what Plivo sends for messaging; signs the URL and a nonce only.
    #[default]
    V2,
    /// `X-Plivo-Signature-V3`: also signs the parameters.
    V3,
}

channel! {
    TelnyxChannel {
        /// Authenticates API calls (sending).
        api_key: Secret,
        /// The account's Ed25519 public key (base64, from the Telnyx portal), verifies webhooks.
        public_key: String,
    }
}

channel! {
    SinchChannel {
        service_plan_id: String,
        /// Authenticates API calls (sending).
        api_token: Secret,
        /// The secret Sinch signs callbacks with (HMAC-SHA256), agreed with Sinch.
        webhook_secret: Secret,
    }
}

channel! {
    MessageBirdChannel {
        /// Authenticates API calls (sending).
        access_key: Secret,
        /// The signing key shown in the dashboard; verifies webhooks.
        signing_key: Secret,
        /// Which signature the webhooks carry.
        #[serde(default)]
        signature: MessageBirdSignature,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageBirdSignature {
    /// `MessageBird-Signature-JWT`: the current MessageBird scheme.
    #[default]
    Jwt,
    /// `MessageBird-Signature` over the sorted query: the deprecated MessageBird scheme.
    Legacy,
    /// `messagebird-signature` over the full URL: the Bird platform's scheme.
    Bird,
}

channel! {
    HttpChannel {
        /// Shared with the gateway: signs its webhooks (HMAC-SHA256).
        secret: Secret,
    }
}
