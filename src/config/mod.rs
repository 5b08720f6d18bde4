//! Configuration: an optional TOML file, every key overridable by `HEARBACK_<SECTION>__<KEY>`.
//!
//! Unknown keys and bad values are refused at start-up with the key's name, where it came from
//! and why; `hearback.example.toml` documents every key with its default.

mod cases;
mod channels;
mod database;
mod dispatch;
mod privacy;
mod secret;
mod webhooks;

pub use cases::{CasesConfig, EmailConfig};
pub use channels::{
    ChannelCommon, ChannelConfig, ChannelName, ConsoleChannel, CountryCode, HttpChannel,
    MessageBirdChannel, MessageBirdSignature, PlivoChannel, PlivoSignatureVersion, Sender,
    SinchChannel, TelnyxChannel, TwilioChannel, VonageApi, VonageChannel, VonageSignatureMethod,
};
pub use database::{DatabaseConfig, DatabaseKind, DatabaseUrl, DatabaseUrlError, SqliteSync};
pub use dispatch::DispatchConfig;
pub use privacy::{MIN_HASH_KEY_CHARS, PrivacyConfig};
pub use secret::Secret;
pub use webhooks::{EndpointConfig, WebhooksConfig};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variables with the `HEARBACK_` prefix that are not configuration keys.
const NON_KEY_VARIABLES: &[&str] = &["CONFIG", "DATABASE_URL", "TEST_POSTGRES_URL"];
pub const DEFAULT_CONFIG_PATH: &str = "hearback.toml";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub jobs: JobsConfig,
    pub log: LogConfig,
    pub flows: FlowsConfig,
    pub dispatch: DispatchConfig,
    pub cases: CasesConfig,
    pub email: EmailConfig,
    pub webhooks: WebhooksConfig,
    pub privacy: PrivacyConfig,
    pub channels: BTreeMap<ChannelName, ChannelConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// After SIGTERM/SIGINT: how long in-flight requests and jobs get to finish.
    pub shutdown_timeout_secs: u64,
    /// A request that takes longer is answered 503.
    pub request_timeout_secs: u64,
    /// Largest request body accepted on `/api/v1` routes.
    pub api_body_limit_bytes: usize,
    /// Largest webhook body accepted from a provider.
    pub webhook_body_limit_bytes: usize,
    /// Largest file accepted by `POST /api/v1/imports` (it is spooled to a temporary file, not
    /// held in memory).
    pub import_body_limit_bytes: u64,
    /// The public base URL providers call (`https://sms.example.com`), as configured at the
    /// provider: signatures cover the URL, and behind a proxy the server cannot see it. Unset,
    /// the URL is rebuilt from the request's Host header as `http://host/path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<url::Url>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_timeout_secs: 30,
            request_timeout_secs: 30,
            api_body_limit_bytes: 1024 * 1024,
            webhook_body_limit_bytes: 64 * 1024,
            import_body_limit_bytes: 256 * 1024 * 1024,
            public_url: None,
        }
    }
}

impl ServerConfig {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Workers of one instance for reminders, expiries and upkeep, and as many for texts (each
    /// taking up to 32 send jobs at a time).
    pub concurrency: usize,
    /// How often an idle instance looks for due jobs.
    pub poll_interval_ms: u64,
    /// A claimed job belongs to its worker this long; the lease is renewed while the job runs,
    /// and a job whose worker died is picked up again once it expires.
    pub lease_secs: u64,
    /// Attempts before a job is declared dead, unless its kind says otherwise.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with each attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest delay between two attempts.
    pub backoff_max_secs: u64,
    /// Succeeded jobs are deleted after this many days; dead jobs are kept for inspection (until
    /// `[privacy] retention_days`, when that is set).
    pub retention_days: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll_interval_ms: 500,
            lease_secs: 60,
            max_attempts: 10,
            backoff_base_ms: 5_000,
            backoff_max_secs: 3_600,
            retention_days: 7,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// The folder of flow files (`<id>.yaml`, transcripts `<id>.test.yaml` beside them).
    pub dir: PathBuf,
    /// The alert rules file (see `crate::alerts`), relative to the folder that holds `dir`.
    /// Optional: without it no alert is raised.
    pub alerts: PathBuf,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("flows"),
            alerts: PathBuf::from("alerts.yaml"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `hearback=debug,sqlx=warn` …
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Where the configuration comes from: the file (if any) and the process environment.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// An explicitly named file must exist; the default one is optional.
    pub required: bool,
}

impl ConfigSource {
    pub fn from_cli(path: Option<PathBuf>) -> Self {
        match path {
            Some(path) => Self {
                path,
                required: true,
            },
            None => Self {
                path: PathBuf::from(DEFAULT_CONFIG_PATH),
                required: false,
            },
        }
    }
}

impl Config {
    /// Reads the file, then the `HEARBACK_…` environment variables over it.
    pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if source.path.exists() {
            figment = figment.merge(Toml::file_exact(&source.path));
        } else if source.required {
            return Err(ConfigError::File {
                path: source.path.clone(),
                reason: "no such file".into(),
            });
        }
        figment = figment.merge(environment_keys());
        if let Ok(url) = std::env::var("HEARBACK_DATABASE_URL") {
            figment = figment.merge(figment::providers::Serialized::default("database.url", url));
        }
        let config: Config = figment.extract().map_err(|e| describe(e, &source.path))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &str, reason: &str| Err(ConfigError::Invalid(format!("key '{key}': {reason}")));
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.database.inbound_writers == 0 {
            return invalid("database.inbound_writers", "must be at least 1");
        }
        if self.database.inbound_writers > self.database.max_connections {
            return invalid(
                "database.inbound_writers",
                "must be at most database.max_connections: each writer holds a connection",
            );
        }
        if self.database.sqlite_max_connections == 0 {
            return invalid("database.sqlite_max_connections", "must be at least 1");
        }
        if self.jobs.concurrency == 0 {
            return invalid("jobs.concurrency", "must be at least 1");
        }
        if self.jobs.max_attempts == 0 {
            return invalid("jobs.max_attempts", "must be at least 1");
        }
        if self.jobs.lease_secs < 2 {
            return invalid("jobs.lease_secs", "must be at least 2 seconds");
        }
        if self.jobs.poll_interval_ms == 0 {
            return invalid("jobs.poll_interval_ms", "must be at least 1");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return invalid("log.level", &format!("not a valid filter ({e})"));
        }
        if let Err((key, reason)) = self
            .dispatch
            .rules()
            .map(drop)
            .and(self.dispatch.region().map(drop))
            .and(self.dispatch.spend_cap_micros().map(drop))
        {
            return invalid(&format!("dispatch.{key}"), &reason);
        }
        if let Err((key, reason)) = self.privacy.check() {
            return invalid(&format!("privacy.{key}"), &reason);
        }
        if let Err(reason) = self.cases.close_after() {
            return invalid("cases.close_after", &reason);
        }
        if let Err(reason) = self.cases.reply_window() {
            return invalid("cases.reply_window", &reason);
        }
        if let Some(url) = &self.email.smtp_url {
            if let Err(e) =
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url.expose())
            {
                return invalid("email.smtp_url", &format!("not an SMTP URL ({e})"));
            }
            match &self.email.from {
                None => return invalid("email.from", "required with email.smtp_url"),
                Some(from) if from.parse::<lettre::message::Mailbox>().is_err() => {
                    return invalid(
                        "email.from",
                        "not an address like `hearback <alerts@example.com>`",
                    );
                }
                Some(_) => {}
            }
        }
        if let Err((key, reason)) = self.webhooks.validate() {
            return invalid(&format!("webhooks.{key}"), &reason);
        }
        for (name, channel) in &self.channels {
            self.validate_channel(name, channel)?;
        }
        Ok(())
    }

    fn validate_channel(
        &self,
        name: &ChannelName,
        channel: &ChannelConfig,
    ) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid(format!(
                "key 'channels.{name}.{key}': {reason}"
            )))
        };
        let common = channel.common();
        // The console channel has a built-in sender; a real one cannot send without one.
        if common.senders.is_empty() && !matches!(channel, ChannelConfig::Console(_)) {
            return invalid("senders", "list at least one number or sender ID".into());
        }
        if channel.messages_per_second() == Some(0) {
            return invalid("messages_per_second", "must be at least 1".into());
        }
        if let Some(cost) = common.cost_per_segment {
            if !cost.is_finite() || cost < 0.0 {
                return invalid("cost_per_segment", "must be a positive number or 0".into());
            }
        }
        if let Some(fallback) = common.fallback {
            // Following fallbacks must end: a loop would pass a failed message round forever.
            let mut seen = vec![name];
            let mut next = Some(fallback);
            while let Some(current) = next {
                if seen.contains(&current) {
                    return invalid(
                        "fallback",
                        format!("channel '{current}' falls back in a loop"),
                    );
                }
                let Some(target) = self.channels.get(current) else {
                    return invalid("fallback", format!("no channel is named '{current}'"));
                };
                seen.push(current);
                next = target.common().fallback;
            }
        }
        Ok(())
    }

    /// The channels in effect: the configured ones, or a single `console` channel.
    pub fn effective_channels(&self) -> BTreeMap<ChannelName, ChannelConfig> {
        if self.channels.is_empty() {
            BTreeMap::from([(
                ChannelName::console(),
                ChannelConfig::Console(ConsoleChannel::default()),
            )])
        } else {
            self.channels.clone()
        }
    }
}

/// `HEARBACK_SERVER__LISTEN` → `server.listen`; the few non-key variables are left out.
fn environment_keys() -> Env {
    Env::prefixed("HEARBACK_")
        .filter(|key| {
            !NON_KEY_VARIABLES
                .iter()
                .any(|v| key.as_str().eq_ignore_ascii_case(v))
        })
        .split("__")
}

/// One line per problem, naming the key, where its value came from, and the reason.
fn describe(error: figment::Error, file: &Path) -> ConfigError {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            // figment's path usually ends with the unknown key already, but not inside a tagged
            // enum (a channel's table); the key is appended where it is missing.
            let mut path = e.path.clone();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
            }
            let key = path.join(".");
            let origin = match e.metadata.as_ref().map(|m| m.name.as_ref()) {
                Some(name) if name.contains("TOML") => format!(" (in {})", file.display()),
                Some(name) if name.contains("environment") => {
                    format!(
                        " (from environment variable HEARBACK_{})",
                        path.join("__").to_ascii_uppercase()
                    )
                }
                _ => String::new(),
            };
            match &e.kind {
                figment::error::Kind::UnknownField(..) => format!("unknown key '{key}'{origin}"),
                kind => format!("key '{key}'{origin}: {kind}"),
            }
        })
        .collect();
    ConfigError::Invalid(lines.join("; "))
}

#[cfg(test)]
mod tests;
