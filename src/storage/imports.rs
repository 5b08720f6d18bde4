//! Imports: their progress, and the rows that did not become a new invitation, with the reason.

use super::{Backend, BeginWrite, Storage, StorageError, on_pool};
use crate::time::Timestamp;

/// Rejections per statement: six values each, well under SQLite's limit.
pub(crate) const REJECTIONS_PER_STATEMENT: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ImportRecord {
    pub id: String,
    pub source: String,
    /// `csv` or `jsonl`.
    pub format: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub rows: i64,
    pub accepted: i64,
    pub rejected: i64,
    /// Why a failed import stopped.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// A row of an import that did not become a new invitation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ImportRejection {
    /// The row's line in the file (1 is the first line; a CSV's header is line 1).
    pub line: i64,
    pub event_id: Option<String>,
    /// A [`crate::intake::Reason`], a declined invitation's reason, or `duplicate_event`.
    pub reason: String,
    pub message: String,
    /// The invitation the event already had, or the one recorded as declined.
    pub invitation_id: Option<String>,
}

/// What an import records of one batch, in the transaction of the batch's invitations
/// ([`Storage::import_invitations`]): its rows' counts and its rejections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportChunk {
    pub accepted: u64,
    pub rejections: Vec<ImportRejection>,
    pub at: Timestamp,
}

/// Adds `$chunk` (an [`ImportChunk`]) to import `$id`'s counts and records its rejections,
/// through `$tx`. A rejection already recorded for its line is kept, not doubled.
macro_rules! write_import_chunk {
    ($tx:expr, $id:expr, $chunk:expr) => {{
        let (id, chunk): (&str, &$crate::storage::ImportChunk) = ($id, $chunk);
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let accepted = i64::try_from(chunk.accepted).unwrap_or(i64::MAX);
        for part in chunk.rejections.chunks($crate::storage::imports::REJECTIONS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO import_rejections (import_id, line, event_id, reason, message, invitation_id) ",
            );
            insert.push_values(part, |mut row, r| {
                row.push_bind(id)
                    .push_bind(r.line)
                    .push_bind(&r.event_id)
                    .push_bind(&r.reason)
                    .push_bind(&r.message)
                    .push_bind(&r.invitation_id);
            });
            insert.push(" ON CONFLICT (import_id, line) DO NOTHING");
            // One text per size: kept prepared on SQLite only (BatchPlans).
            let kept = $crate::storage::kept(&$tx);
            insert.build().persistent(kept).execute(&mut *$tx).await?;
        }
        sqlx::query(
            "UPDATE imports SET rows = rows + $1, accepted = accepted + $2, rejected = rejected + $3, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(accepted + count(chunk.rejections.len()))
        .bind(accepted)
        .bind(count(chunk.rejections.len()))
        .bind(chunk.at)
        .bind(id)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use write_import_chunk;

impl Storage {
    pub async fn create_import(
        &self,
        id: &str,
        source: &str,
        format: &str,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO imports (id, source, format, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'running', $4, $4)",
            )
            .bind(id)
            .bind(source)
            .bind(format)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Brings PostgreSQL's statistics of the tables an import grows up to date (`ANALYZE`), so
    /// that the batches' lookups are planned for the tables' real size. Autovacuum does it too,
    /// but only a minute or more after a table has grown by a tenth: meanwhile a table filled
    /// seconds ago looks empty to the planner, which then scans it whole for each batch (a
    /// million-row import slowed to 3 400 rows/s, each batch's lookup of the contacts'
    /// invitations reading every invitation written before it). SQLite plans by its indexes
    /// without statistics: nothing to do.
    pub async fn refresh_import_statistics(&self) -> Result<(), StorageError> {
        if let Backend::Postgres(pool) = &self.backend {
            sqlx::query("ANALYZE contacts, invitations, jobs")
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Marks an import finished: `completed`, or `failed` with the reason it stopped.
    pub async fn finish_import(
        &self,
        id: &str,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE imports SET status = $1, error = $2, updated_at = $3, finished_at = $3 WHERE id = $4",
            )
            .bind(if error.is_some() { "failed" } else { "completed" })
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn import(&self, id: &str) -> Result<Option<ImportRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, source, format, status, rows, accepted, rejected, error, created_at, \
                 updated_at, finished_at FROM imports WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// An import's rejections after line `after_line`, in line order, at most `limit`.
    pub async fn import_rejections(
        &self,
        id: &str,
        after_line: i64,
        limit: u32,
    ) -> Result<Vec<ImportRejection>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT line, event_id, reason, message, invitation_id FROM import_rejections \
                 WHERE import_id = $1 AND line > $2 ORDER BY line LIMIT $3",
            )
            .bind(id)
            .bind(after_line)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })?)
    }
}
