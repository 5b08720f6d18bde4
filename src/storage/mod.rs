//! The storage layer: one API shaped like the use cases, two backends.
//!
//! SQLite (embedded, the zero-configuration default) and PostgreSQL (production, several instances
//! at once) run the same SQL wherever the dialects agree; where they do not (job claiming, list
//! parameters) each backend has its own statement. Correctness lives in the schema's constraints;
//! a violated constraint comes back as a typed [`StorageError`].

mod api_keys;
mod audit;
mod batch;
pub(crate) mod bulk;
mod cases;
mod codec;
mod contacts;
mod conversations;
pub(crate) mod imports;
mod inbound;
mod intake;
mod jobs;
mod listing;
mod opening;
mod responses;
mod schema;
mod sending;
mod units;
mod webhooks;
mod write_set;

pub use api_keys::{ApiKeyCredential, ApiKeyRecord, NewApiKey};
pub use audit::{Actor, AuditEntry};
pub use batch::InboundWriter;
pub use cases::{
    ActiveCase, CASE_CLOSE_JOB, CASE_NOTICE_JOB, CASE_SLA_JOB, CaseEventRecord, CaseFilter,
    CaseInput, CaseRecord, CaseScope, CaseText, NewAlert, NewUser, Resolution, ThreadMessage,
    UserRecord,
};
pub use contacts::{
    CardAnswer, CardCase, CardConversation, CardInvitation, CardMessage, ContactCard,
    ContactSummary, Retention,
};
pub(crate) use conversations::insert_event;
pub use conversations::{
    Advance, AnswerRecord, ConversationStatus, ConversationView, EXPIRE_JOB, InvitationOutcome,
    InvitationRecord, NewAnswer, NewEvent, Purpose, REMIND_JOB, SEND_JOB,
};
pub use imports::{ImportChunk, ImportRecord, ImportRejection};
pub use inbound::{
    ConsentChange, ConsentRecord, ContactRecord, InboundBatch, InboundContext, InboundOutcome,
    InboundPlan, MessagePart, MessageRecord, NewInbound, NewStatus, OutboxRecord, OwnedInbound,
    Planner, QueuedInbound,
};
pub use intake::{MAX_INVITATIONS_PER_BATCH, NewInvitation, QuotaCheck};
pub use jobs::{ClaimedJob, JobCount, JobLease, JobRecord, JobState, NewJob};
pub use listing::{InvitationFilter, InvitationListRow};
pub use opening::{OPEN_JOB, OpenPlan, Opening, ScheduledInvitation};
pub use responses::{ResponseAnswer, ResponseFilter, ResponseRecord};
pub use schema::SchemaStatus;
pub use sending::{
    ConsoleMessage, DailyUse, FirstMessage, OPTED_OUT_AT_CARRIER, OutgoingMessage, SendFailure,
    SentMessage, Spend, status_rank,
};
pub use units::{NewUnit, Unit};
pub use webhooks::{
    AttemptRecord, AttemptResult, DeliveryFilter, DeliveryNext, DeliveryRecord, DeliveryToSend,
    EndpointRecord, NewEndpoint, WEBHOOK_DELIVERY_JOB,
};
pub(crate) use write_set::{OpeningTimes, Timing, WriteSet, flush_writes, insert_new_cases};

use crate::config::{DatabaseConfig, DatabaseKind, DatabaseUrl, SqliteSync};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot connect to the database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request contradicts what is stored (the same key with other content, a concurrent
    /// change); the message says which.
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{0} refers to a record that does not exist")]
    UnknownReference(&'static str),
    #[error(
        "the database schema is at version {current}, this hearback needs version {required}: run `hearback migrate`"
    )]
    SchemaTooOld { current: i64, required: i64 },
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        StorageError::Database(error)
    }
}

/// Maps constraint violations of one statement to what they mean for that use case.
pub(crate) struct Violations {
    pub unique: &'static str,
    pub foreign_key: &'static str,
}

impl Violations {
    pub(crate) fn map(&self, error: sqlx::Error) -> StorageError {
        if let sqlx::Error::Database(db) = &error {
            if db.is_unique_violation() {
                return StorageError::AlreadyExists(self.unique);
            }
            if db.is_foreign_key_violation() {
                return StorageError::UnknownReference(self.foreign_key);
            }
        }
        StorageError::Database(error)
    }
}

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool is configured. Inside, `$pool` is a `&SqlitePool`
/// or a `&PgPool`; the body must compile for both.
macro_rules! on_pool {
    ($storage:expr, |$pool:ident| $body:expr) => {
        match &$storage.backend {
            $crate::storage::Backend::Sqlite($pool) => $body,
            $crate::storage::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// How a batch's statements name their lists and whether they are kept prepared, per backend.
///
/// - **Lists.** SQLite binds each value (`IN ($1, $2, …)`), and keeps the statement prepared,
///   one per list length: it plans by its indexes alone (no statistics), so a kept statement
///   loses nothing, and parsing a statement of thousands of parameters again for each batch was
///   4 % of an import's CPU. PostgreSQL binds the list as one array (`= ANY($1)`): one text
///   whatever the batch's size, and a plan made from one array rather than a thousand parameters
///   (planning a lookup of 500 numbers took 0.7 ms by an `IN` list, 0.2 ms by an array).
/// - **Plans.** PostgreSQL plans each run (`persistent(false)`): a kept statement falls back to
///   a generic plan made while the tables were small — a sequential scan — and an import slowed
///   from 2 000 to 600 rows/s within 60 000 rows (see `storage::intake`).
///
/// (docs/PERFORMANCE.md)
pub(crate) trait BatchPlans: sqlx::Database {
    const KEPT: bool;

    /// Whether several instances may write the database at once (PostgreSQL; SQLite serves one).
    const SEVERAL_INSTANCES: bool;

    /// Appends ` IN (…)` or ` = ANY(…)` of `values` to `query`.
    fn push_list<'a>(query: &mut sqlx::QueryBuilder<'a, Self>, values: &[&'a str]);
}

impl BatchPlans for sqlx::Sqlite {
    const KEPT: bool = true;
    const SEVERAL_INSTANCES: bool = false;

    fn push_list<'a>(query: &mut sqlx::QueryBuilder<'a, Self>, values: &[&'a str]) {
        query.push(" IN (");
        let mut list = query.separated(", ");
        for value in values {
            list.push_bind(*value);
        }
        query.push(")");
    }
}

impl BatchPlans for sqlx::Postgres {
    const KEPT: bool = false;
    const SEVERAL_INSTANCES: bool = true;

    fn push_list<'a>(query: &mut sqlx::QueryBuilder<'a, Self>, values: &[&'a str]) {
        query.push(" = ANY(").push_bind(values.to_vec()).push(")");
    }
}

/// [`BatchPlans::KEPT`] for the backend of `tx`: the argument of a batch statement's
/// `persistent`.
pub(crate) fn kept<DB: BatchPlans>(_tx: &sqlx::Transaction<'_, DB>) -> bool {
    DB::KEPT
}

/// [`BatchPlans::SEVERAL_INSTANCES`] for the backend of `tx`.
pub(crate) fn several_instances<DB: BatchPlans>(_tx: &sqlx::Transaction<'_, DB>) -> bool {
    DB::SEVERAL_INSTANCES
}

/// [`BatchPlans::push_list`] for the backend of `tx`.
pub(crate) fn push_list<'a, DB: BatchPlans>(
    _tx: &sqlx::Transaction<'_, DB>,
    query: &mut sqlx::QueryBuilder<'a, DB>,
    values: &[&'a str],
) {
    DB::push_list(query, values);
}

/// The rows of `$head <list of $ids>$tail` through `$tx`, the list written for the backend
/// ([`BatchPlans::push_list`]: `$head` ends with the column the ids are of); none when `$ids`
/// (a `&[&str]`) is empty. The caller names the row type.
macro_rules! fetch_by_ids {
    ($tx:expr, $head:expr, $ids:expr, $tail:expr) => {{
        let ids: &[&str] = $ids;
        if ids.is_empty() {
            Vec::new()
        } else {
            let mut select = sqlx::QueryBuilder::new($head);
            $crate::storage::push_list(&$tx, &mut select, ids);
            select.push($tail);
            let kept = $crate::storage::kept(&$tx);
            select
                .build_query_as()
                .persistent(kept)
                .fetch_all(&mut *$tx)
                .await?
        }
    }};
}
pub(crate) use fetch_by_ids;

/// Starts a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so that
/// two writers queue on the busy timeout instead of failing when a read lock cannot be upgraded.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// The database: cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Storage {
    pub(crate) backend: Backend,
    url: DatabaseUrl,
    /// SQLite's writers take turns here; see [`Storage::writing`].
    writer_turn: Arc<tokio::sync::Mutex<()>>,
    /// The key of `blocked_numbers` (see [`crate::privacy`]): contacts created for a blocked
    /// number start opted out, and erasure needs it. Set by [`Storage::with_privacy_key`].
    privacy_key: Option<Arc<crate::privacy::HashKey>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("url", &self.url).finish()
    }
}

impl Storage {
    /// Waits for this process's turn to write. SQLite has one writer at a time: writers that
    /// queue inside SQLite wait in its busy handler, which sleeps up to 100 ms between tries, so
    /// under load most of the time goes to sleeping. Queueing here instead hands the lock on in
    /// order and at once (measured in docs/PERFORMANCE.md). Every method that writes takes its
    /// turn first and holds it until it returns; reads never wait (WAL). PostgreSQL has row
    /// locks and needs no turn.
    pub(crate) async fn writing(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite(_) => Some(self.writer_turn.lock().await),
            Backend::Postgres(_) => None,
        }
    }

    /// Opens a pool and checks that the database answers. Creates the SQLite file if needed.
    pub async fn connect(config: &DatabaseConfig) -> Result<Storage, StorageError> {
        let url = config.url.clone();
        let connect_error = |e: sqlx::Error| StorageError::Connect {
            url: url.redacted(),
            reason: describe_connect_error(&e),
        };
        let timeout = Duration::from_secs(config.connect_timeout_secs.max(1));
        let backend = match url.kind() {
            DatabaseKind::Sqlite => {
                let options = SqliteConnectOptions::from_str(url.expose())
                    .map_err(connect_error)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(match config.sqlite_synchronous {
                        SqliteSync::Full => SqliteSynchronous::Full,
                        SqliteSync::Normal => SqliteSynchronous::Normal,
                    })
                    .foreign_keys(true)
                    // An erased contact's texts are overwritten with zeros in the file, not left
                    // in free pages where a copy of the file would still hold them.
                    .pragma("secure_delete", "ON")
                    // SQLite's default page cache is 2 MiB: past that every page read is a
                    // system call. 64 MiB (the default) keeps the working set of a busy
                    // instance in memory (measured in docs/PERFORMANCE.md).
                    .pragma(
                        "cache_size",
                        format!("-{}", u64::from(config.sqlite_cache_mib) * 1024),
                    )
                    .busy_timeout(Duration::from_millis(config.sqlite_busy_timeout_ms));
                let pool = SqlitePoolOptions::new()
                    .max_connections(config.sqlite_max_connections)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Backend::Sqlite(pool)
            }
            DatabaseKind::Postgres => {
                let options = PgConnectOptions::from_str(url.expose()).map_err(connect_error)?;
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Backend::Postgres(pool)
            }
        };
        Ok(Storage {
            backend,
            url,
            writer_turn: Arc::default(),
            privacy_key: None,
        })
    }

    /// This storage with the key of `blocked_numbers`. Every process that creates contacts
    /// (`serve`, `import`) sets it: without it a blocked number is not recognised, and erasure
    /// is refused.
    pub fn with_privacy_key(mut self, key: crate::privacy::HashKey) -> Storage {
        self.privacy_key = Some(Arc::new(key));
        self
    }

    pub fn has_privacy_key(&self) -> bool {
        self.privacy_key.is_some()
    }

    pub fn kind(&self) -> DatabaseKind {
        self.url.kind()
    }

    /// The most connections the pool opens.
    pub fn max_connections(&self) -> u32 {
        on_pool!(self, |pool| pool.options().get_max_connections())
    }

    pub fn backend_name(&self) -> &'static str {
        match self.kind() {
            DatabaseKind::Sqlite => "sqlite",
            DatabaseKind::Postgres => "postgres",
        }
    }

    /// Checks that the database answers a query.
    pub async fn ping(&self) -> Result<(), StorageError> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Closes every connection; used at shutdown so SQLite checkpoints its WAL.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// sqlx wraps I/O errors; the innermost cause is the useful one on one line.
fn describe_connect_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".into(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}
