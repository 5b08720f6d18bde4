//! The key that keeps erased opted-out numbers blocked.
//!
//! An erased contact's number is gone from the database, yet a customer who said STOP must not
//! be texted again because an integration sends their number once more. The number is kept as
//! its HMAC-SHA256 under a key that lives outside the database (`[privacy] hash_key`, or a key
//! file generated once): a salted hash stored beside its salt could be reversed by hashing every
//! possible phone number (there are only some billions); without the key it cannot.

use crate::config::{Config, DatabaseKind};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};

/// The name of the generated key file.
pub const KEY_FILE_NAME: &str = "hearback.key";

/// The HMAC key of `blocked_numbers`; `Debug` never shows it.
#[derive(Clone)]
pub struct HashKey(Vec<u8>);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("privacy key file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

impl HashKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> HashKey {
        HashKey(bytes.into())
    }

    /// HMAC-SHA256 of an E.164 number.
    pub fn phone_hmac(&self, e164: &str) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(e164.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The configured key, else the one in the key file, generated there the first time.
    pub fn from_config(config: &Config) -> Result<HashKey, KeyError> {
        if let Some(key) = &config.privacy.hash_key {
            return Ok(HashKey::new(key.expose().as_bytes()));
        }
        HashKey::from_file(&key_file(config))
    }

    /// Reads the key file, or creates it with 32 random bytes (hex), readable by its owner only.
    pub fn from_file(path: &Path) -> Result<HashKey, KeyError> {
        let error = |reason: String| KeyError::File {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = text.trim();
                if key.chars().count() < crate::config::MIN_HASH_KEY_CHARS {
                    return Err(error(format!(
                        "holds fewer than {} characters",
                        crate::config::MIN_HASH_KEY_CHARS
                    )));
                }
                Ok(HashKey::new(key.as_bytes()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = hex::encode(rand::random::<[u8; 32]>());
                if !publish_new(path, &key).map_err(|e| error(e.to_string()))? {
                    // Another instance starting at the same moment published its key: it is
                    // the key, whole (it appeared at once, never half written).
                    return HashKey::from_file(path);
                }
                tracing::info!(file = %path.display(), "generated the privacy key; back it up with the database");
                Ok(HashKey::new(key.as_bytes()))
            }
            Err(e) => Err(error(e.to_string())),
        }
    }
}

/// Publishes `key` at `path` unless a file is there already (another instance's key then stands:
/// `false`), mode 0600. The key is written and synced to a file of its own first, then linked
/// in: a reader never sees the file half written (with a file created then written, an instance
/// starting beside another read it empty and refused to start, seen in CI).
fn publish_new(path: &Path, key: &str) -> std::io::Result<bool> {
    use std::io::Write;
    let mut staged = path.as_os_str().to_owned();
    staged.push(format!(".{:016x}.new", rand::random::<u64>()));
    let staged = PathBuf::from(staged);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&staged).and_then(|mut file| {
        file.write_all(key.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    // A hard link, unlike a rename, never replaces a file already there.
    let linked = std::fs::hard_link(&staged, path);
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links (some network volumes): the file is created and
        // written in place, as it was before, with the brief window that brings.
        Err(_) => {
            let mut file = match options.open(path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(e),
            };
            file.write_all(key.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok(true)
        }
    }
}

/// `[privacy] key_file`, else `hearback.key` beside the SQLite file, or in the working directory.
pub fn key_file(config: &Config) -> PathBuf {
    if let Some(path) = &config.privacy.key_file {
        return path.clone();
    }
    if config.database.url.kind() == DatabaseKind::Sqlite {
        let raw = config.database.url.expose();
        let file = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or(raw);
        let file = file.split('?').next().unwrap_or(file);
        if let Some(parent) = Path::new(file).parent() {
            return parent.join(KEY_FILE_NAME);
        }
    }
    PathBuf::from(KEY_FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_number_under_the_same_key_gives_the_same_hmac_and_another_key_another() {
        let key = HashKey::new(b"k".repeat(32));
        assert_eq!(
            key.phone_hmac("+33612345678"),
            key.phone_hmac("+33612345678")
        );
        assert_ne!(
            key.phone_hmac("+33612345678"),
            key.phone_hmac("+33612345679")
        );
        let other = HashKey::new(b"o".repeat(32));
        assert_ne!(
            key.phone_hmac("+33612345678"),
            other.phone_hmac("+33612345678")
        );
    }

    #[test]
    fn a_generated_key_file_is_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let first = HashKey::from_file(&path).unwrap();
        let again = HashKey::from_file(&path).unwrap();
        assert_eq!(
            first.phone_hmac("+33612345678"),
            again.phone_hmac("+33612345678")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn instances_starting_together_all_get_the_one_key_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearback.key");
        let keys: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| HashKey::from_file(&path).expect("every instance starts").0)
                })
                .collect();
            starting.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(
            keys.iter().all(|key| key == written.trim().as_bytes()),
            "{keys:?}"
        );
        // Nothing staged is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_key_file_too_short_to_be_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        std::fs::write(&path, "1234\n").unwrap();
        let error = HashKey::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("fewer than 32 characters"), "{error}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "1234\n",
            "left as it was"
        );
    }

    #[test]
    fn the_key_file_is_beside_the_sqlite_file() {
        let mut config = Config::default();
        config.database.url =
            crate::config::DatabaseUrl::parse("sqlite:///var/lib/hb/hearback.db").unwrap();
        assert_eq!(key_file(&config), PathBuf::from("/var/lib/hb/hearback.key"));
        config.database.url =
            crate::config::DatabaseUrl::parse("postgres://u@localhost/hb").unwrap();
        assert_eq!(key_file(&config), PathBuf::from("hearback.key"));
    }
}
