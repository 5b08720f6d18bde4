//! The audit log: who did what to which record, when. Entries are written in the transaction of
//! the change they describe.

use super::{Storage, StorageError, on_pool};
use crate::time::Timestamp;
use serde_json::Value;
use sqlx::types::Json;
use std::fmt;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Someone at the machine, through the `hearback` command.
    Cli,
    /// An integration or a user, through an API key (its id).
    ApiKey(String),
    /// hearback itself (scheduled maintenance, expiries, …).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Cli => f.write_str("cli"),
            Actor::ApiKey(id) => write!(f, "api_key:{id}"),
            Actor::System => f.write_str("system"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub details: Value,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    at: Timestamp,
    actor: String,
    action: String,
    target_type: String,
    target_id: Option<String>,
    details: Json<Value>,
}

/// Appends an audit entry through `$conn` (a transaction of either backend).
macro_rules! insert_audit {
    ($conn:expr, $entry:expr) => {{
        let entry: &$crate::storage::AuditEntry = $entry;
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target_type, target_id, details) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry.at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target_type)
        .bind(&entry.target_id)
        .bind(sqlx::types::Json(&entry.details))
        .execute($conn)
        .await
    }};
}
pub(crate) use insert_audit;

impl Storage {
    /// Appends one entry on its own (an API request; changes write theirs in their transaction).
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            insert_audit!(pool, entry)?;
            Ok(())
        })
    }

    /// The latest entries about one kind of record, newest first.
    pub async fn audit_entries(
        &self,
        target_type: &str,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let rows: Vec<AuditRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT at, actor, action, target_type, target_id, details FROM audit_log \
                 WHERE target_type = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(target_type)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                at: r.at,
                actor: r.actor,
                action: r.action,
                target_type: r.target_type,
                target_id: r.target_id,
                details: r.details.0,
            })
            .collect())
    }
}
