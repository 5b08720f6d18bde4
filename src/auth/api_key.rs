//! API keys: `hb_<id>_<secret>`.
//!
//! The id is public and indexes the stored record; the secret is 256 random bits of which only
//! the SHA-256 is stored. A slow password hash would add nothing for a secret of that entropy.
//! The stored hash is compared in constant time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

const PREFIX: &str = "hb_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A key as the caller presents it. `Debug` shows the id only.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyToken {
    id: String,
    secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key: expected hb_<id>_<secret>")]
pub struct MalformedApiKey;

impl ApiKeyToken {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut id = [0u8; ID_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        Self {
            id: hex::encode(id),
            secret: hex::encode(secret),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, MalformedApiKey> {
        let rest = raw.strip_prefix(PREFIX).ok_or(MalformedApiKey)?;
        let (id, secret) = rest.split_once('_').ok_or(MalformedApiKey)?;
        let is_hex = |s: &str, bytes: usize| {
            s.len() == bytes * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if is_hex(id, ID_BYTES) && is_hex(secret, SECRET_BYTES) {
            Ok(Self {
                id: id.to_ascii_lowercase(),
                secret: secret.to_ascii_lowercase(),
            })
        } else {
            Err(MalformedApiKey)
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    /// Whether this key's secret is the one whose hash was stored.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        self.secret_hash().ct_eq(stored_hash).into()
    }

    /// The full key, to be shown once to whoever created it.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }
}

impl fmt::Debug for ApiKeyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyToken({PREFIX}{}_***)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_generated_key_parses_back_and_matches_its_hash() {
        let key = ApiKeyToken::generate();
        let parsed = ApiKeyToken::parse(&key.reveal()).unwrap();
        assert_eq!(parsed, key);
        assert!(parsed.matches(&key.secret_hash()));
    }

    #[test]
    fn another_secret_does_not_match() {
        let key = ApiKeyToken::generate();
        let other = ApiKeyToken::generate();
        assert!(!key.matches(&other.secret_hash()));
        assert!(!key.matches(&[]), "a truncated stored hash never matches");
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(
            ApiKeyToken::generate().reveal(),
            ApiKeyToken::generate().reveal()
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = ApiKeyToken::generate().reveal();
        for bad in [
            String::new(),
            "hb_".into(),
            good.replace("hb_", "sk_"),
            good[..good.len() - 1].to_string(),
            format!("{good}0"),
            good.replacen('_', "-", 2),
            format!("{}g", &good[..good.len() - 1]),
        ] {
            assert_eq!(ApiKeyToken::parse(&bad), Err(MalformedApiKey), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKeyToken::generate();
        let printed = format!("{key:?}");
        assert!(printed.contains(key.id()));
        assert!(!printed.contains(&key.secret));
    }

    proptest! {
        #[test]
        fn parsing_any_text_never_panics(raw in ".*") {
            let _ = ApiKeyToken::parse(&raw);
        }
    }
}
