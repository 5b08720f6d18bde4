//! `[cases]` and `[email]`: how cases are followed up and how their notices reach people.

use super::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasesConfig {
    /// A resolved case whose recovery question is not answered closes this long after its
    /// resolution (humantime: `72h`, `3d`).
    pub close_after: String,
    /// The recovery question texted on resolution (unless the request says `follow_up: false`),
    /// by language.
    pub follow_up_fr: String,
    pub follow_up_en: String,
    /// An agent's text waits for the sending window unless the customer wrote within this long.
    pub reply_window: String,
}

impl Default for CasesConfig {
    fn default() -> Self {
        Self {
            close_after: "72h".into(),
            follow_up_fr: "Avons-nous réglé votre problème ? Répondez OUI ou NON.".into(),
            follow_up_en: "Did we solve your problem? Reply YES or NO.".into(),
            reply_window: "1h".into(),
        }
    }
}

impl CasesConfig {
    pub fn close_after(&self) -> Result<Duration, String> {
        positive(&self.close_after)
    }

    pub fn reply_window(&self) -> Result<Duration, String> {
        positive(&self.reply_window)
    }
}

fn positive(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(e) => Err(format!("not a duration like `72h` ({e})")),
    }
}

/// Outgoing e-mail. Without `smtp_url`, no e-mail is sent: cases open all the same and their
/// events are pushed, and a line at start-up says so.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtp://host:25`, `smtp://user:password@host:587?tls=required` (STARTTLS) or
    /// `smtps://host:465` (lettre's URL form). A secret: it may hold a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<Secret>,
    /// The sender, e.g. `hearback <alerts@example.com>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The web address of hearback shown in notices (links to the case), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<url::Url>,
    /// An SMTP exchange that takes longer fails (and is tried again later); 30 s by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl EmailConfig {
    pub fn enabled(&self) -> bool {
        self.smtp_url.is_some()
    }
}
