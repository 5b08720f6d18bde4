//! Migrations, embedded in the binary, one folder per backend with matching versions.
//!
//! Migrations are additive: the previous release keeps running on a newer schema during a rolling
//! deploy. An instance refuses to serve a schema older than the one it was built for.

use super::{Backend, Storage, StorageError, on_pool};
use sqlx::migrate::Migrator;
use std::sync::LazyLock;

// Migrations applied by a newer release are not an error: that release may run beside this one.
static SQLITE_MIGRATIONS: LazyLock<Migrator> =
    LazyLock::new(|| tolerant(sqlx::migrate!("./migrations/sqlite")));
static POSTGRES_MIGRATIONS: LazyLock<Migrator> =
    LazyLock::new(|| tolerant(sqlx::migrate!("./migrations/postgres")));

fn tolerant(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// Where the database's schema stands relative to this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Whether hearback has ever migrated this database (an empty one has no schema at all).
    pub initialised: bool,
    /// Highest migration applied, if any.
    pub current: Option<i64>,
    /// Highest migration this binary ships.
    pub required: i64,
    /// Migrations this binary ships that the database lacks.
    pub missing: Vec<i64>,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.missing.is_empty()
    }
}

impl Storage {
    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite(_) => &SQLITE_MIGRATIONS,
            Backend::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the migrations the database lacks; returns how many were applied. Safe to run from
    /// several instances at once (the migrator holds a database lock), and migrations applied by a
    /// newer release are left alone.
    pub async fn migrate(&self) -> Result<usize, StorageError> {
        let before = self.schema_status().await?.missing.len();
        let migrator = self.migrator();
        on_pool!(self, |pool| migrator.run(pool).await)?;
        Ok(before)
    }

    pub async fn schema_status(&self) -> Result<SchemaStatus, StorageError> {
        let migrator = self.migrator();
        let required = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let (initialised, applied): (bool, Vec<i64>) = match on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
            .fetch_all(pool)
            .await
        }) {
            Ok(versions) => (true, versions),
            Err(sqlx::Error::Database(e)) if is_missing_table(e.as_ref()) => (false, Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let missing = migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect();
        Ok(SchemaStatus {
            initialised,
            current: applied.last().copied(),
            required,
            missing,
        })
    }

    /// Fails unless every migration this binary ships has been applied.
    pub async fn ensure_schema_current(&self) -> Result<(), StorageError> {
        let status = self.schema_status().await?;
        if status.is_current() {
            Ok(())
        } else {
            Err(StorageError::SchemaTooOld {
                current: status.current.unwrap_or(0),
                required: status.required,
            })
        }
    }
}

fn is_missing_table(error: &dyn sqlx::error::DatabaseError) -> bool {
    // PostgreSQL: undefined_table; SQLite reports it only in the message.
    error.code().as_deref() == Some("42P01") || error.message().contains("no such table")
}
