//! `[webhooks]`: the CRM endpoints events are pushed to, and how they are pushed.

use super::Secret;
use crate::webhooks::{AddressPolicy, RetrySchedule, SigningSecret, unknown_event_types};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Networks endpoints may reach besides the public Internet (CIDR, e.g. `10.0.0.0/8`).
    /// Private, loopback, link-local and reserved addresses are refused otherwise.
    pub allow_networks: Vec<String>,
    /// A request that takes longer fails and is tried again later.
    pub timeout_secs: u64,
    /// The waits after each failed attempt (humantime); after the last, the delivery is dead.
    pub retry_schedule: Vec<String>,
    /// How often new events are handed out to the endpoints, in milliseconds.
    pub fan_out_interval_ms: u64,
    /// Endpoints kept in the configuration, by name; more are added through the API.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, EndpointConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub url: url::Url,
    /// `whsec_` and the base64 of a 24- to 64-byte key.
    pub secret: Secret,
    /// The event types it wants; all when left out.
    #[serde(default)]
    pub events: Vec<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_networks: Vec::new(),
            timeout_secs: 10,
            retry_schedule: ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
                .map(String::from)
                .to_vec(),
            fan_out_interval_ms: 500,
            endpoints: BTreeMap::new(),
        }
    }
}

impl WebhooksConfig {
    /// The address policy, or the key at fault and why.
    pub fn address_policy(&self) -> Result<AddressPolicy, (String, String)> {
        let nets = self
            .allow_networks
            .iter()
            .map(|net| {
                net.parse().map_err(|_| {
                    (
                        "allow_networks".to_string(),
                        format!("`{net}` is not a network like `10.0.0.0/8`"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AddressPolicy::new(nets))
    }

    pub fn retry_schedule(&self) -> Result<RetrySchedule, (String, String)> {
        let fault = |reason: String| ("retry_schedule".to_string(), reason);
        if self.retry_schedule.is_empty() {
            return Err(fault("list at least one delay".into()));
        }
        let delays = self
            .retry_schedule
            .iter()
            .map(|text| match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(fault(format!("`{text}` must be longer than zero"))),
                Err(e) => Err(fault(format!("`{text}` is not a duration like `5m` ({e})"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(RetrySchedule::new(delays))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Checks every key; the error names the key (below `webhooks.`) and the reason.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.address_policy()?;
        self.retry_schedule()?;
        if self.timeout_secs == 0 {
            return Err(("timeout_secs".into(), "must be at least 1".into()));
        }
        if self.fan_out_interval_ms == 0 {
            return Err(("fan_out_interval_ms".into(), "must be at least 1".into()));
        }
        for (name, endpoint) in &self.endpoints {
            let key = |field: &str| format!("endpoints.{name}.{field}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err((
                    format!("endpoints.{name}"),
                    "names are lowercase letters, digits, `_` and `-`".into(),
                ));
            }
            if !matches!(endpoint.url.scheme(), "http" | "https") {
                return Err((key("url"), "must be an http or https URL".into()));
            }
            if let Err(e) = SigningSecret::parse(endpoint.secret.expose()) {
                return Err((key("secret"), e.to_string()));
            }
            let unknown = unknown_event_types(&endpoint.events);
            if !unknown.is_empty() {
                return Err((
                    key("events"),
                    format!("unknown event types: {}", unknown.join(", ")),
                ));
            }
        }
        Ok(())
    }
}
