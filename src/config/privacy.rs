//! `[privacy]`: the key that keeps erased opted-out numbers blocked, and how long personal data
//! is kept.

use super::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Shortest `hash_key` accepted: a key that can be guessed would let anyone holding the database
/// test every phone number against `blocked_numbers`.
pub const MIN_HASH_KEY_CHARS: usize = 32;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// The HMAC key of `blocked_numbers` (at least 32 characters). Unset, a random key is
    /// generated once into `key_file`. Changing it unblocks every erased number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<Secret>,
    /// Where the generated key is kept when `hash_key` is unset: by default `hearback.key`
    /// beside the SQLite file, or in the working directory with PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Message texts, free-text answers and invitation variables older than this many days are
    /// emptied, and contacts with no activity for as long are anonymised, by a daily job.
    /// Unset: kept until erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

impl PrivacyConfig {
    /// `Err((key, reason))` for a value that cannot be used.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.retention_days == Some(0) {
            return Err((
                "retention_days",
                "must be at least 1 (leave it out to keep data)".into(),
            ));
        }
        if let Some(key) = &self.hash_key {
            if key.expose().chars().count() < MIN_HASH_KEY_CHARS {
                return Err((
                    "hash_key",
                    format!(
                        "must be at least {MIN_HASH_KEY_CHARS} characters (e.g. `openssl rand -hex 32`)"
                    ),
                ));
            }
        }
        Ok(())
    }
}
