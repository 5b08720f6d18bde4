//! API keys: stored by id with the SHA-256 of their secret.

use super::audit::insert_audit;
use super::{Actor, AuditEntry, BeginWrite, Storage, StorageError, Violations, on_pool};
use crate::time::Timestamp;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub id: String,
    pub name: String,
    pub secret_hash: [u8; 32],
    /// The user the key acts for (with their unit's scope); `None`: an integration's key.
    pub user_id: Option<String>,
}

/// What may be shown about a key: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What authentication needs to check a presented key.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyCredential {
    pub id: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub revoked_at: Option<Timestamp>,
    pub user_id: Option<String>,
}

impl std::fmt::Debug for ApiKeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCredential")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

const CREATE_KEY: Violations = Violations {
    unique: "an active API key with this name",
    foreign_key: "the key's unit",
};

impl Storage {
    pub async fn create_api_key(
        &self,
        new: &NewApiKey,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ApiKeyRecord, StorageError> {
        let _writing = self.writing().await;
        let audit = AuditEntry {
            at: now,
            actor: actor.to_string(),
            action: "api_key.created".into(),
            target_type: "api_key".into(),
            target_id: Some(new.id.clone()),
            details: json!({ "name": new.name, "user_id": new.user_id }),
        };
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO api_keys (id, name, secret_hash, user_id, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&new.id)
            .bind(&new.name)
            .bind(&new.secret_hash[..])
            .bind(&new.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| CREATE_KEY.map(e))?;
            insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
            Ok::<_, StorageError>(())
        })?;
        Ok(ApiKeyRecord {
            id: new.id.clone(),
            name: new.name.clone(),
            created_at: now,
            revoked_at: None,
        })
    }

    /// Every key, active and revoked, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
            )
            .fetch_all(pool)
            .await
        })?)
    }

    /// Revokes a key; revoking a revoked key changes nothing and returns it as it is.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ApiKeyRecord, StorageError> {
        let _writing = self.writing().await;
        let audit = AuditEntry {
            at: now,
            actor: actor.to_string(),
            action: "api_key.revoked".into(),
            target_type: "api_key".into(),
            target_id: Some(id.to_string()),
            details: json!({}),
        };
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let revoked = sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if revoked == 1 {
                insert_audit!(&mut *tx, &audit)?;
            }
            let record: Option<ApiKeyRecord> = sqlx::query_as(
                "SELECT id, name, created_at, revoked_at FROM api_keys WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let record = record.ok_or(StorageError::NotFound("API key"))?;
            tx.commit().await?;
            Ok(record)
        })
    }

    pub async fn api_key_credential(
        &self,
        id: &str,
    ) -> Result<Option<ApiKeyCredential>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, secret_hash, revoked_at, user_id FROM api_keys WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
        })?)
    }
}
