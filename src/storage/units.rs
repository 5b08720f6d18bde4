//! The organisation tree.

use super::audit::insert_audit;
use super::{Actor, AuditEntry, BeginWrite, Storage, StorageError, Violations, on_pool};
use crate::time::Timestamp;
use crate::units::UnitCode;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUnit {
    pub code: UnitCode,
    pub name: String,
    pub parent: Option<UnitCode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub code: UnitCode,
    pub name: String,
    pub parent: Option<UnitCode>,
    pub created_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct UnitRow {
    code: String,
    name: String,
    parent_code: Option<String>,
    created_at: Timestamp,
}

impl TryFrom<UnitRow> for Unit {
    type Error = StorageError;
    fn try_from(row: UnitRow) -> Result<Unit, StorageError> {
        Ok(Unit {
            code: stored_code(&row.code)?,
            name: row.name,
            parent: row.parent_code.as_deref().map(stored_code).transpose()?,
            created_at: row.created_at,
        })
    }
}

fn stored_code(raw: &str) -> Result<UnitCode, StorageError> {
    UnitCode::parse(raw).map_err(|e| StorageError::Corrupt(e.to_string()))
}

const SELECT_UNIT: &str = "SELECT u.code, u.name, p.code AS parent_code, u.created_at \
                           FROM units u LEFT JOIN units p ON p.id = u.parent_id";

const CREATE_UNIT: Violations = Violations {
    unique: "a unit with this code",
    foreign_key: "the parent unit",
};

impl Storage {
    /// Adds a unit under an existing parent (or as a root). The tree cannot get a cycle: a parent
    /// must exist before its children.
    pub async fn create_unit(
        &self,
        new: &NewUnit,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Unit, StorageError> {
        let mut created = self
            .create_units(std::slice::from_ref(new), actor, now)
            .await?;
        Ok(created.remove(0))
    }

    /// Adds units in order, all or none: a parent may be created earlier in the same batch.
    pub async fn create_units(
        &self,
        batch: &[NewUnit],
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Vec<Unit>, StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            for new in batch {
                let parent_id: Option<String> = match &new.parent {
                    None => None,
                    Some(parent) => {
                        let found = sqlx::query_scalar("SELECT id FROM units WHERE code = $1")
                            .bind(parent.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                        Some(found.ok_or(StorageError::UnknownReference("the parent unit"))?)
                    }
                };
                sqlx::query("INSERT INTO units (id, code, name, parent_id, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind(new.code.as_str())
                    .bind(&new.name)
                    .bind(&parent_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| CREATE_UNIT.map(e))?;
                let audit = AuditEntry {
                    at: now,
                    actor: actor.to_string(),
                    action: "unit.created".into(),
                    target_type: "unit".into(),
                    target_id: Some(new.code.to_string()),
                    details: json!({ "name": new.name, "parent": new.parent.as_ref().map(UnitCode::as_str) }),
                };
                insert_audit!(&mut *tx, &audit)?;
            }
            tx.commit().await?;
            Ok::<_, StorageError>(())
        })?;
        Ok(batch
            .iter()
            .map(|new| Unit {
                code: new.code.clone(),
                name: new.name.clone(),
                parent: new.parent.clone(),
                created_at: now,
            })
            .collect())
    }

    /// The id of the unit with this code, if there is one.
    pub async fn unit_id(&self, code: &str) -> Result<Option<String>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT id FROM units WHERE code = $1")
                .bind(code)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// Every unit's id, by code (an import resolves its rows' units from it).
    pub async fn unit_ids(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, StorageError> {
        let rows: Vec<(String, String)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT code, id FROM units")
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().collect())
    }

    pub async fn unit(&self, code: &UnitCode) -> Result<Option<Unit>, StorageError> {
        let sql = format!("{SELECT_UNIT} WHERE u.code = $1");
        let row: Option<UnitRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(code.as_str())
            .fetch_optional(pool)
            .await)?;
        row.map(Unit::try_from).transpose()
    }

    /// Every unit, ordered by code.
    pub async fn units(&self) -> Result<Vec<Unit>, StorageError> {
        let sql = format!("{SELECT_UNIT} ORDER BY u.code");
        let rows: Vec<UnitRow> = on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)?;
        rows.into_iter().map(Unit::try_from).collect()
    }

    /// The codes of a unit's ancestors, from the root down to its parent.
    pub async fn unit_ancestors(&self, code: &UnitCode) -> Result<Vec<UnitCode>, StorageError> {
        const SQL: &str = "WITH RECURSIVE chain (id, parent_id, code, depth) AS ( \
                 SELECT id, parent_id, code, 0 FROM units WHERE code = $1 \
                 UNION ALL \
                 SELECT u.id, u.parent_id, u.code, c.depth + 1 FROM units u JOIN chain c ON u.id = c.parent_id \
             ) SELECT code FROM chain WHERE depth > 0 ORDER BY depth DESC";
        let codes: Vec<String> = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(code.as_str())
            .fetch_all(pool)
            .await)?;
        codes.iter().map(|c| stored_code(c)).collect()
    }

    /// The codes of a unit's direct children, ordered by code.
    pub async fn unit_children(&self, code: &UnitCode) -> Result<Vec<UnitCode>, StorageError> {
        const SQL: &str = "SELECT c.code FROM units c JOIN units p ON c.parent_id = p.id \
                           WHERE p.code = $1 ORDER BY c.code";
        let codes: Vec<String> = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(code.as_str())
            .fetch_all(pool)
            .await)?;
        codes.iter().map(|c| stored_code(c)).collect()
    }
}
