//! CRM webhooks: endpoints, one delivery per event per endpoint, every attempt, and the order
//! one contact's events reach an endpoint in.
//!
//! Events are written to the outbox by the change that causes them. [`Storage::fan_out_events`]
//! hands the new ones to the endpoints that want them (a delivery each) and marks them handed
//! out, in one transaction, one instance at a time; a delivery's id therefore grows in the order
//! its event became visible, which for one contact is the order its changes committed in.
//! Only the oldest pending delivery of an (endpoint, contact) has a job: when it is delivered or
//! dead, the next one's job is queued in the same transaction ([`Storage::record_webhook_attempt`]).

use super::{BeginWrite, Storage, StorageError, on_pool};
use crate::time::Timestamp;
use serde_json::Value;
use sqlx::types::Json;

/// The job that makes a delivery's requests.
pub const WEBHOOK_DELIVERY_JOB: &str = "webhook.deliver";
/// A delivery job is run again when its worker dies; retries of the request are counted on the
/// delivery, not on the job.
const DELIVERY_JOB_MAX_ATTEMPTS: i32 = 20;
/// Rows per multi-row insert (eight parameters each, well under SQLite's limit).
const INSERT_CHUNK: usize = 500;
/// PostgreSQL advisory lock key of the fan-out: one instance hands events out at a time.
const FAN_OUT_LOCK: i64 = 0x6865_6172_6261_636b; // "hearback"
/// PostgreSQL advisory lock key between the fan-out (exclusive) and the settling of deliveries
/// (shared). Without it, a fan-out could add a contact's next delivery while the one before it is
/// being settled: each transaction would see the other's rows as they were before, the new
/// delivery would not be a head when handed out, and the job that settled the old one would not
/// see it after: a chain without a job. SQLite's single writer orders them by construction.
const CHAIN_LOCK: i64 = 0x6865_6172_6261_636c;

/// Takes [`CHAIN_LOCK`] shared in `$tx`, on PostgreSQL: for a transaction that settles a
/// delivery or queues a chain's next job.
macro_rules! lock_chains_shared {
    ($storage:expr, $tx:expr) => {
        if matches!($storage.backend, super::Backend::Postgres(_)) {
            sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
                .bind(CHAIN_LOCK)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EndpointRecord {
    pub id: String,
    /// Its name in the configuration; API endpoints have none.
    pub name: Option<String>,
    pub url: String,
    pub secret: String,
    pub event_types: Json<Vec<String>>,
    /// `config` or `api`.
    pub source: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// An endpoint as the configuration or an API call gives it.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub secret: String,
    pub event_types: Vec<String>,
}

/// Everything a delivery job needs for one request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryToSend {
    pub id: i64,
    pub state: String,
    pub attempts: i32,
    pub replays: i32,
    pub contact_id: Option<String>,
    pub endpoint_id: String,
    pub url: String,
    pub secret: String,
    pub endpoint_disabled_at: Option<Timestamp>,
    /// When a failed delivery is tried again; `None` for one never tried.
    pub next_attempt_at: Option<Timestamp>,
    pub event_id: String,
    pub event_type: String,
    pub version: i32,
    pub occurred_at: Timestamp,
    pub payload: Json<Value>,
}

/// What one request gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Delivered,
    RetryAt(Timestamp),
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub id: i64,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub contact_id: Option<String>,
    /// pending, delivered or dead.
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub attempted_at: Timestamp,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Which deliveries to list; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<String>,
    pub state: Option<String>,
    pub event_type: Option<String>,
    /// Listed newest first: ids below this one.
    pub before: Option<i64>,
    pub limit: u32,
}

#[derive(sqlx::FromRow)]
struct PendingEvent {
    seq: i64,
    event_type: String,
    contact_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct EndpointTypes {
    id: String,
    event_types: Json<Vec<String>>,
}

const ENDPOINT_COLUMNS: &str =
    "id, name, url, secret, event_types, source, created_at, updated_at, disabled_at";
const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, o.event_id, o.event_type, d.contact_id, d.state, d.attempts, \
     d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.updated_at, d.delivered_at";

impl Storage {
    /// `jsonb_build_object` or `json_object`: a delivery job's payload built in SQL.
    fn json_object_fn(&self) -> &'static str {
        match self.backend {
            super::Backend::Sqlite(_) => "json_object",
            super::Backend::Postgres(_) => "jsonb_build_object",
        }
    }

    /// Queues the job of every delivery `d` matching `{scope}` (a condition with `$2`… bound by
    /// the caller; `$1` is now). A delivery that has its job already keeps it (the job's key
    /// holds the number of replays).
    fn enqueue_jobs_sql(&self, scope: &str) -> String {
        self.enqueue_jobs_keyed_sql(scope, "")
    }

    /// [`Storage::enqueue_jobs_sql`] with `{key_tail}` (SQL) appended to each job's key.
    fn enqueue_jobs_keyed_sql(&self, scope: &str, key_tail: &str) -> String {
        format!(
            "INSERT INTO jobs (kind, payload, unique_key, state, run_at, attempts, max_attempts, created_at, updated_at) \
             SELECT '{WEBHOOK_DELIVERY_JOB}', {json}('delivery_id', d.id), \
             '{WEBHOOK_DELIVERY_JOB}:' || d.id || ':' || d.replays{key_tail}, 'pending', $1, 0, {DELIVERY_JOB_MAX_ATTEMPTS}, $1, $1 \
             FROM webhook_deliveries d WHERE {scope} ORDER BY d.id ON CONFLICT (unique_key) DO NOTHING",
            json = self.json_object_fn(),
        )
    }

    /// [`Storage::enqueue_jobs_sql`] for the pending deliveries matching `{scope}` that are the
    /// oldest pending one of their (endpoint, contact): the ones whose turn it is.
    fn enqueue_heads_sql(&self, scope: &str) -> String {
        self.enqueue_jobs_sql(&Self::heads_scope(scope))
    }

    fn heads_scope(scope: &str) -> String {
        format!(
            "d.state = 'pending' AND {scope} \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id \
             AND p.contact_id = d.contact_id AND p.state = 'pending' AND p.id < d.id)"
        )
    }

    /// Queues the job of a contact's oldest pending delivery to an endpoint, unless it has one
    /// by its key already: for a job that went down the chain as far as it may and stopped at a
    /// delivery it did not attempt.
    pub async fn hand_on_webhook_chain(
        &self,
        endpoint_id: &str,
        contact_id: &str,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let enqueue = self.enqueue_heads_sql("d.endpoint_id = $2 AND d.contact_id = $3");
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            lock_chains_shared!(self, tx);
            sqlx::query(&enqueue)
                .bind(now)
                .bind(endpoint_id)
                .bind(contact_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Gives up delivery `id` for a job out of attempts (its worker stopped, or the database
    /// failed, on every one): dead with `why` if still pending, and then its contact's next
    /// pending delivery to the endpoint gets a job of its own, keyed after `job` (the key its
    /// earlier jobs had may still be held), so that the chain does not stop with it.
    pub async fn give_up_webhook_delivery(
        &self,
        id: i64,
        job: i64,
        why: &str,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let enqueue = self.enqueue_jobs_keyed_sql(
            &Self::heads_scope(
                "d.endpoint_id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = $2) \
                 AND d.contact_id = (SELECT contact_id FROM webhook_deliveries WHERE id = $2)",
            ),
            " || ':after-job-' || $3",
        );
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            lock_chains_shared!(self, tx);
            let given_up = sqlx::query(
                "UPDATE webhook_deliveries SET state = 'dead', next_attempt_at = NULL, last_error = $1, \
                 updated_at = $2 WHERE id = $3 AND state = 'pending'",
            )
            .bind(why)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Settled meanwhile: whoever settled it goes on with the chain.
            if given_up == 1 {
                sqlx::query(&enqueue)
                    .bind(now)
                    .bind(id)
                    .bind(job.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// Makes the endpoints of the configuration those of the database: each added or updated
    /// by name, and the configured ones no longer there disabled (their deliveries stay listed).
    pub async fn sync_configured_endpoints(
        &self,
        endpoints: &[(String, NewEndpoint)],
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            for (name, endpoint) in endpoints {
                sqlx::query(
                    "INSERT INTO webhook_endpoints (id, name, url, secret, event_types, source, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'config', $6, $6) \
                     ON CONFLICT (name) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
                     event_types = excluded.event_types, updated_at = excluded.updated_at, disabled_at = NULL",
                )
                .bind(new_endpoint_id())
                .bind(name)
                .bind(&endpoint.url)
                .bind(&endpoint.secret)
                .bind(Json(&endpoint.event_types))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let mut disable =
                sqlx::QueryBuilder::new("UPDATE webhook_endpoints SET disabled_at = ");
            disable
                .push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE source = 'config' AND disabled_at IS NULL");
            if !endpoints.is_empty() {
                disable.push(" AND name NOT IN (");
                let mut names = disable.separated(", ");
                for (name, _) in endpoints {
                    names.push_bind(name);
                }
                disable.push(")");
            }
            disable.build().execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn create_webhook_endpoint(
        &self,
        endpoint: &NewEndpoint,
        now: Timestamp,
    ) -> Result<EndpointRecord, StorageError> {
        let id = new_endpoint_id();
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, url, secret, event_types, source, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'api', $5, $5)",
            )
            .bind(&id)
            .bind(&endpoint.url)
            .bind(&endpoint.secret)
            .bind(Json(&endpoint.event_types))
            .bind(now)
            .execute(pool)
            .await
            .map(drop)
        })?;
        self.webhook_endpoint(&id)
            .await?
            .ok_or(StorageError::NotFound("webhook endpoint"))
    }

    /// Every endpoint, oldest first.
    pub async fn webhook_endpoints(&self) -> Result<Vec<EndpointRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
            ))
            .fetch_all(pool)
            .await
        })?)
    }

    pub async fn webhook_endpoint(&self, id: &str) -> Result<Option<EndpointRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Hands up to `limit` new events to the enabled endpoints that want them and queues the
    /// jobs of the deliveries that head their (endpoint, contact); returns how many events were
    /// handed out (all of them are marked so, wanted or not). On PostgreSQL, an instance that
    /// finds another one at it returns 0 at once.
    pub async fn fan_out_events(&self, limit: u32, now: Timestamp) -> Result<usize, StorageError> {
        // Most rounds find nothing: a read (the partial index) says so without taking SQLite's
        // write lock or a PostgreSQL transaction twice a second per instance.
        let undispatched = self.undispatched();
        let waiting: Option<i64> = on_pool!(self, |pool| {
            sqlx::query_scalar(&format!(
                "SELECT seq FROM outbox WHERE {undispatched} LIMIT 1"
            ))
            .fetch_optional(pool)
            .await
        })?;
        if waiting.is_none() {
            return Ok(0);
        }
        let _writing = self.writing().await;
        let enqueue_heads = self.enqueue_heads_sql("d.id > $2");
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            if matches!(self.backend, super::Backend::Postgres(_)) {
                let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(FAN_OUT_LOCK)
                    .fetch_one(&mut *tx)
                    .await?;
                if !ours {
                    return Ok(0);
                }
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CHAIN_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            let events: Vec<PendingEvent> = sqlx::query_as(&format!(
                "SELECT seq, event_type, contact_id FROM outbox WHERE {undispatched} ORDER BY seq LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            if events.is_empty() {
                return Ok(0);
            }
            // Deliveries made from here on have larger ids: only they can be new heads.
            let before: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM webhook_deliveries")
                    .fetch_one(&mut *tx)
                    .await?;
            let endpoints: Vec<EndpointTypes> = sqlx::query_as(
                "SELECT id, event_types FROM webhook_endpoints WHERE disabled_at IS NULL ORDER BY id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let deliveries: Vec<(&str, &PendingEvent)> = events
                .iter()
                .flat_map(|event| {
                    endpoints
                        .iter()
                        .filter(|e| crate::webhooks::subscribes(&e.event_types, &event.event_type))
                        .map(move |e| (e.id.as_str(), event))
                })
                .collect();
            for chunk in deliveries.chunks(INSERT_CHUNK) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO webhook_deliveries (endpoint_id, event_seq, contact_id, state, attempts, replays, created_at, updated_at) ",
                );
                insert.push_values(chunk, |mut row, (endpoint, event)| {
                    row.push_bind(*endpoint)
                        .push_bind(event.seq)
                        .push_bind(&event.contact_id)
                        .push_bind("pending")
                        .push_bind(0_i32)
                        .push_bind(0_i32)
                        .push_bind(now)
                        .push_bind(now);
                });
                insert.push(" ON CONFLICT (endpoint_id, event_seq) DO NOTHING");
                let kept = super::kept(&tx);
                insert.build().persistent(kept).execute(&mut *tx).await?;
            }
            if !deliveries.is_empty() {
                sqlx::query(&enqueue_heads)
                    .bind(now)
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
            }
            // By the list read: an event committed meanwhile with a seq in the range is not
            // among them and waits for the next round.
            let mut mark = sqlx::QueryBuilder::new("UPDATE outbox SET dispatched = ");
            mark.push_bind(true).push(" WHERE seq IN (");
            let mut seqs = mark.separated(", ");
            for event in &events {
                seqs.push_bind(event.seq);
            }
            mark.push(")");
            let kept = super::kept(&tx);
            mark.build().persistent(kept).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(events.len())
        })
    }

    /// The condition of the events not handed out yet, written as the partial index
    /// `outbox_undispatched` is. A bound value (`dispatched = $1`) would do on SQLite, which plans
    /// with the value, but PostgreSQL reuses a generic plan for a kept statement, and a generic
    /// plan cannot prove a parameter false: it scanned the whole outbox twice a second.
    fn undispatched(&self) -> &'static str {
        match self.backend {
            super::Backend::Sqlite(_) => "dispatched = 0",
            super::Backend::Postgres(_) => "NOT dispatched",
        }
    }

    pub async fn webhook_delivery_to_send(
        &self,
        id: i64,
    ) -> Result<Option<DeliveryToSend>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT d.id, d.state, d.attempts, d.replays, d.contact_id, e.id AS endpoint_id, e.url, e.secret, \
                 e.disabled_at AS endpoint_disabled_at, d.next_attempt_at, o.event_id, o.event_type, o.version, o.occurred_at, o.payload \
                 FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                 JOIN outbox o ON o.seq = d.event_seq WHERE d.id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Records an attempt of a delivery seen with `attempts` attempts and `replays` replays, and
    /// where the delivery goes next; once it is delivered or dead, and `hand_on` says so, the job
    /// of its contact's next delivery to the endpoint is queued (a job that goes on down the
    /// chain itself does not hand on). `false` (and nothing written) when the delivery moved on
    /// meanwhile: another run recorded this attempt, or it was replayed.
    pub async fn record_webhook_attempt(
        &self,
        delivery: &DeliveryToSend,
        result: &AttemptResult,
        (next, hand_on): (DeliveryNext, bool),
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let (state, next_attempt_at, delivered_at) = match next {
            DeliveryNext::Delivered => ("delivered", None, Some(now)),
            DeliveryNext::RetryAt(at) => ("pending", Some(at), None),
            DeliveryNext::Dead => ("dead", None, None),
        };
        let enqueue_next = self.enqueue_heads_sql(
            "d.endpoint_id = $2 AND d.contact_id = (SELECT contact_id FROM webhook_deliveries WHERE id = $3)",
        );
        let status = result.status.map(i32::from);
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            if state != "pending" {
                lock_chains_shared!(self, tx);
            }
            let updated = sqlx::query(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $1, next_attempt_at = $2, \
                 last_status = $3, last_error = $4, updated_at = $5, delivered_at = $6 \
                 WHERE id = $7 AND state = 'pending' AND attempts = $8 AND replays = $9",
            )
            .bind(state)
            .bind(next_attempt_at)
            .bind(status)
            .bind(&result.error)
            .bind(now)
            .bind(delivered_at)
            .bind(delivery.id)
            .bind(delivery.attempts)
            .bind(delivery.replays)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, error, duration_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(delivery.id)
            .bind(now)
            .bind(status)
            .bind(&result.error)
            .bind(result.duration_ms)
            .execute(&mut *tx)
            .await?;
            if state != "pending" && hand_on {
                sqlx::query(&enqueue_next)
                    .bind(now)
                    .bind(&delivery.endpoint_id)
                    .bind(delivery.id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The oldest pending delivery of a contact's events to an endpoint: the one whose turn it is.
    pub async fn webhook_chain_head(
        &self,
        endpoint_id: &str,
        contact_id: &str,
    ) -> Result<Option<i64>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND contact_id = $2 \
                 AND state = 'pending' ORDER BY id LIMIT 1",
            )
            .bind(endpoint_id)
            .bind(contact_id)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Deliveries matching `filter`, newest first.
    pub async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            let mut query = sqlx::QueryBuilder::new(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN outbox o ON o.seq = d.event_seq WHERE 1 = 1"
            ));
            if let Some(endpoint) = &filter.endpoint_id {
                query
                    .push(" AND d.endpoint_id = ")
                    .push_bind(endpoint.clone());
            }
            if let Some(state) = &filter.state {
                query.push(" AND d.state = ").push_bind(state.clone());
            }
            if let Some(event_type) = &filter.event_type {
                query
                    .push(" AND o.event_type = ")
                    .push_bind(event_type.clone());
            }
            if let Some(before) = filter.before {
                query.push(" AND d.id < ").push_bind(before);
            }
            query
                .push(" ORDER BY d.id DESC LIMIT ")
                .push_bind(i64::from(filter.limit));
            query.build_query_as().fetch_all(pool).await
        })?)
    }

    pub async fn webhook_delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN outbox o ON o.seq = d.event_seq WHERE d.id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// The attempts of these deliveries, oldest first.
    pub async fn webhook_attempts(&self, ids: &[i64]) -> Result<Vec<AttemptRecord>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(on_pool!(self, |pool| {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT delivery_id, attempted_at, status_code, error, duration_ms FROM webhook_attempts WHERE delivery_id IN (",
            );
            let mut list = query.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            query.push(") ORDER BY delivery_id, id");
            query.build_query_as().fetch_all(pool).await
        })?)
    }

    /// Sends a delivery again, whatever became of it: it is pending once more, with the whole
    /// retry schedule before it (its earlier attempts stay listed), and its job is queued at once (out of its contact's order: it was asked for). A pending one is a
    /// conflict: it is on its way already.
    pub async fn retry_webhook_delivery(
        &self,
        id: i64,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let enqueue = self.enqueue_jobs_sql("d.id = $2");
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, replays = replays + 1, next_attempt_at = $1, \
                 delivered_at = NULL, updated_at = $1 WHERE id = $2 AND state <> 'pending'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM webhook_deliveries WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(match exists {
                    Some(_) => {
                        StorageError::Conflict("the delivery is pending: it is on its way already")
                    }
                    None => StorageError::NotFound("webhook delivery"),
                });
            }
            sqlx::query(&enqueue)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Sends an endpoint's dead deliveries created at or after `since` again, each with the whole
    /// retry schedule before it and each contact's in their order; returns how many.
    pub async fn replay_dead_deliveries(
        &self,
        endpoint_id: &str,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StorageError> {
        let enqueue_heads = self.enqueue_heads_sql("d.endpoint_id = $2");
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let replayed = sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, replays = replays + 1, next_attempt_at = $1, \
                 updated_at = $1 WHERE endpoint_id = $2 AND state = 'dead' AND created_at >= $3",
            )
            .bind(now)
            .bind(endpoint_id)
            .bind(since)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if replayed > 0 {
                sqlx::query(&enqueue_heads)
                    .bind(now)
                    .bind(endpoint_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(replayed)
        })
    }
}

fn new_endpoint_id() -> String {
    format!("we_{}", uuid::Uuid::now_v7().simple())
}
