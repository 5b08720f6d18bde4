//! `[channels.<name>]`: provider accounts. The database knows a channel by its name only; its
//! credentials stay in the configuration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

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

/// One provider account. The provider adapters (Twilio, Vonage, …) add their variants here.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum ChannelConfig {
    /// Development: outbound messages are logged and kept for inspection, nothing is sent.
    Console(ConsoleChannel),
}

impl ChannelConfig {
    pub fn provider(&self) -> &'static str {
        match self {
            ChannelConfig::Console(_) => "console",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleChannel {
    /// The number or name the console channel pretends to send from.
    #[serde(default = "ConsoleChannel::default_sender")]
    pub sender: String,
}

impl Default for ConsoleChannel {
    fn default() -> Self {
        Self {
            sender: Self::default_sender(),
        }
    }
}

impl ConsoleChannel {
    fn default_sender() -> String {
        "+33600000000".into()
    }
}
