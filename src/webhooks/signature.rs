//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}`, the signature `v1,` and the base64 of its
//! HMAC-SHA256 under the secret's key, the secret `whsec_` and the base64 of that key. Receivers
//! verify with the specification's own libraries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// The specification recommends keys of 24 to 64 bytes.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Generated keys are 32 bytes.
const GENERATED_KEY_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must start with `whsec_`")]
    Prefix,
    #[error("the part after `whsec_` must be base64")]
    NotBase64,
    #[error("the key must be 24 to 64 bytes (it is {0})")]
    Length(usize),
}

/// An endpoint's signing key.
#[derive(Clone)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

impl SigningSecret {
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// A new random secret, as text (`whsec_…`).
    pub fn generate() -> String {
        let key: [u8; GENERATED_KEY_BYTES] = rand::random();
        format!("{PREFIX}{}", STANDARD.encode(key))
    }

    /// The `webhook-signature` header's value for one request.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}
