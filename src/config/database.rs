//! `[database]`: where hearback keeps everything.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use url::Url;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://user:password@host:port/database`.
    pub url: DatabaseUrl,
    /// PostgreSQL: largest number of open connections in the pool.
    pub max_connections: u32,
    /// PostgreSQL: tasks of this instance that commit customers' messages in batches, each on a
    /// connection of its own; one number's messages always go to the same one. One by default:
    /// on the 2-core machine of docs/PERFORMANCE.md, more sessions writing at once cost
    /// PostgreSQL more CPU per message than they gained by overlapping ("Inbound writers on
    /// PostgreSQL"). A database server with more cores may take more. SQLite always has one.
    pub inbound_writers: u32,
    /// SQLite: connections in the pool. One by default: SQLite writes one transaction at a time,
    /// and on a busy instance a single connection does more work per CPU second than several
    /// (each connection has its own thread); see docs/PERFORMANCE.md.
    pub sqlite_max_connections: u32,
    /// How long start-up and requests wait for a connection before failing.
    pub connect_timeout_secs: u64,
    /// How long SQLite waits on a locked database before giving up.
    pub sqlite_busy_timeout_ms: u64,
    /// SQLite: `full` syncs the write-ahead log at every commit, so an acknowledged webhook
    /// survives a power loss; `normal` may lose the last commits on power loss (never on a
    /// crash of hearback alone) and is a little faster.
    pub sqlite_synchronous: SqliteSync,
    /// SQLite: the page cache of each connection, in MiB. Past it every page read is a system
    /// call; it is also most of the process's memory once the database is large. `hearback
    /// import` uses at most `cli::import::IMPORT_SQLITE_CACHE_MIB`.
    pub sqlite_cache_mib: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    #[default]
    Full,
    Normal,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::parse("sqlite://hearback.db").expect("the default URL is valid"),
            max_connections: 10,
            inbound_writers: 1,
            sqlite_max_connections: 1,
            connect_timeout_secs: 5,
            sqlite_busy_timeout_ms: 5_000,
            sqlite_synchronous: SqliteSync::Full,
            sqlite_cache_mib: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// A database URL whose scheme is known to be supported. Its password is hidden when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    kind: DatabaseKind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatabaseUrlError {
    #[error("not a URL ({0}); expected sqlite://FILE or postgres://USER@HOST/DATABASE")]
    Malformed(String),
    #[error("unsupported scheme '{0}'; expected sqlite:// or postgres://")]
    UnsupportedScheme(String),
    #[error("the SQLite URL names no file; expected sqlite://FILE")]
    MissingSqlitePath,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, DatabaseUrlError> {
        let raw = raw.trim();
        let (scheme, rest) = raw
            .split_once(':')
            .ok_or_else(|| DatabaseUrlError::Malformed("no scheme".into()))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => DatabaseKind::Sqlite,
            "postgres" | "postgresql" => DatabaseKind::Postgres,
            other => return Err(DatabaseUrlError::UnsupportedScheme(other.to_string())),
        };
        match kind {
            // sqlite:relative.db, sqlite://relative.db and sqlite:///absolute.db are all accepted.
            DatabaseKind::Sqlite => {
                let path = rest.trim_start_matches("//");
                let path = path.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(DatabaseUrlError::MissingSqlitePath);
                }
            }
            DatabaseKind::Postgres => {
                let url =
                    Url::parse(raw).map_err(|e| DatabaseUrlError::Malformed(e.to_string()))?;
                if url.host_str().unwrap_or_default().is_empty()
                    && !url.query_pairs().any(|(k, _)| k == "host")
                {
                    return Err(DatabaseUrlError::Malformed("no host".into()));
                }
            }
        }
        Ok(Self {
            raw: raw.to_string(),
            kind,
        })
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL as it may appear in logs and error messages.
    pub fn redacted(&self) -> String {
        match Url::parse(&self.raw) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            _ => self.raw.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Serialised redacted: a dump of the configuration never carries the password.
impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        DatabaseUrl::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_urls_are_recognised() {
        for (raw, kind) in [
            ("sqlite://hearback.db", DatabaseKind::Sqlite),
            ("sqlite:hearback.db", DatabaseKind::Sqlite),
            (
                "sqlite:///var/lib/hearback/hearback.db?mode=rwc",
                DatabaseKind::Sqlite,
            ),
            (
                "postgres://postgres@127.0.0.1:5432/test",
                DatabaseKind::Postgres,
            ),
            (
                "postgresql://u:p@db/hearback?sslmode=require",
                DatabaseKind::Postgres,
            ),
        ] {
            assert_eq!(DatabaseUrl::parse(raw).unwrap().kind(), kind, "{raw}");
        }
    }

    #[test]
    fn unsupported_or_malformed_urls_are_refused_with_the_reason() {
        assert_eq!(
            DatabaseUrl::parse("mysql://root@localhost/db"),
            Err(DatabaseUrlError::UnsupportedScheme("mysql".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://"),
            Err(DatabaseUrlError::MissingSqlitePath)
        );
        assert!(matches!(
            DatabaseUrl::parse("hearback.db"),
            Err(DatabaseUrlError::Malformed(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgres://"),
            Err(DatabaseUrlError::Malformed(_))
        ));
    }

    #[test]
    fn passwords_never_appear_when_printed() {
        let url =
            DatabaseUrl::parse("postgres://hearback:s3cr3t@db.internal:5432/hearback").unwrap();
        for printed in [format!("{url}"), format!("{url:?}"), url.redacted()] {
            assert!(!printed.contains("s3cr3t"), "{printed}");
            assert!(printed.contains("hearback:***@db.internal"), "{printed}");
        }
        assert!(url.expose().contains("s3cr3t"));
    }
}
