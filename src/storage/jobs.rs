//! The durable job queue.
//!
//! A job is claimed with a lease: it belongs to one worker until the lease expires, and a job
//! whose worker died is claimed again afterwards. Every change after the claim is fenced on the
//! lease owner, so a worker that lost its lease cannot overwrite the new owner's outcome.
//! PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so instances never wait on each other; SQLite
//! has a single writer, which makes its claim atomic by construction.

use super::{Backend, Storage, StorageError, on_pool};
use crate::time::Timestamp;
use serde_json::Value;
use sqlx::types::Json;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    pub run_at: Timestamp,
    pub max_attempts: u32,
    /// Enqueuing a job whose key is already taken returns the existing job instead.
    pub unique_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Pending,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
        }
    }

    fn parse(raw: &str) -> Result<Self, StorageError> {
        JobState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown job state '{raw}'")))
    }
}

/// A lease under which a transaction writes jobs already claimed, for a runner of this instance
/// to start as soon as the transaction commits, without claiming them (`jobs::JobHandover`). If
/// nothing runs them, they are claimed again when the lease expires, like any job whose worker
/// died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    pub owner: String,
    pub expires_at: Timestamp,
    /// The most jobs to write claimed; the others due now are written pending, for the claims.
    pub most: usize,
    /// Texts through these channels are written pending: another instance sends through them.
    pub not_through: Vec<String>,
    /// Texts to these contacts are written pending: an earlier text to each waits for the
    /// claims, and a later one handed over would overtake it. Filled in by the transaction
    /// that writes the jobs, once it holds the contacts' locks.
    pub not_to: Vec<String>,
}

impl JobLease {
    /// Whether a job sending through `channel` to `contact` is left to the claims whatever the
    /// room.
    pub(crate) fn leaves_to_claims(&self, channel: Option<&str>, contact: Option<&str>) -> bool {
        channel.is_some_and(|channel| self.not_through.iter().any(|c| c == channel))
            || contact.is_some_and(|contact| self.not_to.iter().any(|c| c == contact))
    }
}

/// A job handed to a worker. `attempt` counts this run (the first run is attempt 1).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub attempt: u32,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub unique_key: Option<String>,
    pub state: JobState,
    pub run_at: Timestamp,
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCount {
    pub state: JobState,
    pub count: u64,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: i64,
    kind: String,
    payload: Json<Value>,
    run_at: Timestamp,
    attempts: i32,
    max_attempts: i32,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    kind: String,
    payload: Json<Value>,
    unique_key: Option<String>,
    state: String,
    run_at: Timestamp,
    attempts: i32,
    max_attempts: i32,
    lease_owner: Option<String>,
    lease_expires_at: Option<Timestamp>,
    last_error: Option<String>,
    created_at: Timestamp,
    finished_at: Option<Timestamp>,
}

/// A job's columns as [`JobRow`] reads them.
const JOB_RECORD: &str = "SELECT id, kind, payload, unique_key, state, run_at, attempts, max_attempts, \
     lease_owner, lease_expires_at, last_error, created_at, finished_at FROM jobs";

/// Jobs that are due, or running on a lease that expired.
/// The due jobs a claim takes, as two CTEs (`pending`, `expired`) over `$3` (now), `$5` (how
/// many) and `{kinds}` (the kinds this instance runs); `{lock}` is ` FOR UPDATE SKIP LOCKED` on
/// PostgreSQL. Each walks its own partial index in order and stops after `$5` rows.
const DUE_JOBS: &str = "WITH pending AS (SELECT id, run_at FROM jobs WHERE state = 'pending' AND run_at <= $3 \
     AND {kinds} ORDER BY run_at, id LIMIT $5{lock}), \
     expired AS (SELECT id, run_at FROM jobs WHERE state = 'running' AND lease_expires_at <= $3 \
     AND {kinds} ORDER BY lease_expires_at LIMIT $5{lock}) ";
/// The first `$5` of them, in the order they fell due.
const FIRST_DUE: &str = "(SELECT id FROM (SELECT id, run_at FROM pending UNION ALL SELECT id, run_at FROM expired) AS due \
     ORDER BY run_at, id LIMIT $5)";

/// Longest error text kept on a job; the rest goes to the logs.
const MAX_ERROR_CHARS: usize = 2_000;

fn counted(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn truncated(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

impl Storage {
    /// Queues a job; returns its id. With a unique key already taken, returns the existing job's id.
    pub async fn enqueue_job(&self, job: &NewJob, now: Timestamp) -> Result<i64, StorageError> {
        let _writing = self.writing().await;
        let max_attempts = i32::try_from(job.max_attempts.max(1)).unwrap_or(i32::MAX);
        on_pool!(self, |pool| {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO jobs (kind, payload, unique_key, state, run_at, attempts, max_attempts, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'pending', $4, 0, $5, $6, $6) \
                 ON CONFLICT (unique_key) DO NOTHING RETURNING id",
            )
            .bind(&job.kind)
            .bind(Json(&job.payload))
            .bind(&job.unique_key)
            .bind(job.run_at)
            .bind(max_attempts)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            match inserted {
                Some(id) => Ok(id),
                None => Ok(
                    sqlx::query_scalar("SELECT id FROM jobs WHERE unique_key = $1")
                        .bind(&job.unique_key)
                        .fetch_one(pool)
                        .await?,
                ),
            }
        })
    }

    /// Claims up to `limit` jobs of the given kinds for `worker`, each leased until `now + lease`.
    /// Kinds this instance has no handler for are left to instances that do.
    pub async fn claim_jobs(
        &self,
        worker: &str,
        kinds: &[&str],
        limit: u32,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Vec<ClaimedJob>, StorageError> {
        let _writing = self.writing().await;
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let lease_expires_at = now + lease;
        let set = "SET state = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3";
        let returning = "RETURNING id, kind, payload, run_at, attempts, max_attempts";
        let mut rows: Vec<ClaimedRow> = match &self.backend {
            Backend::Postgres(pool) => {
                let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
                let due = DUE_JOBS
                    .replace("{kinds}", "kind = ANY($4)")
                    .replace("{lock}", " FOR UPDATE SKIP LOCKED");
                let sql = format!("{due}UPDATE jobs {set} WHERE id IN {FIRST_DUE} {returning}");
                sqlx::query_as(&sql)
                    .bind(worker)
                    .bind(lease_expires_at)
                    .bind(now)
                    .bind(kinds)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(pool) => {
                let kinds = serde_json::to_string(kinds).expect("a list of strings serialises");
                let due = DUE_JOBS
                    .replace("{kinds}", "kind IN (SELECT value FROM json_each($4))")
                    .replace("{lock}", "");
                let sql = format!("{due}UPDATE jobs {set} WHERE id IN {FIRST_DUE} {returning}");
                sqlx::query_as(&sql)
                    .bind(worker)
                    .bind(lease_expires_at)
                    .bind(now)
                    .bind(kinds)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?
            }
        };
        // RETURNING gives no order; hand jobs out in the order they fell due.
        rows.sort_by_key(|r| (r.run_at, r.id));
        Ok(rows
            .into_iter()
            .map(|r| ClaimedJob {
                id: r.id,
                kind: r.kind,
                payload: r.payload.0,
                attempt: counted(r.attempts),
                max_attempts: counted(r.max_attempts),
            })
            .collect())
    }

    /// Extends a running job's lease; false when `worker` no longer holds it.
    pub async fn renew_job_lease(
        &self,
        id: i64,
        worker: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let _writing = self.writing().await;
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
                 WHERE id = $3 AND state = 'running' AND lease_owner = $4",
            )
            .bind(until)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Marks a job done; false when `worker` no longer holds its lease (the outcome is dropped).
    pub async fn complete_job(
        &self,
        id: i64,
        worker: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        self.settle_job(id, worker, JobState::Succeeded, None, None, now)
            .await
    }

    /// Marks a batch of jobs done in one statement; returns those `worker` still held (the
    /// others' outcomes are dropped).
    pub async fn complete_jobs(
        &self,
        ids: &[i64],
        worker: &str,
        now: Timestamp,
    ) -> Result<Vec<i64>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let _writing = self.writing().await;
        // One statement text whatever the batch's size (see `Storage::outgoing_messages`).
        let update = "UPDATE jobs SET state = 'succeeded', finished_at = $1, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $1 WHERE state = 'running' AND lease_owner = $2 AND id ";
        Ok(match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_scalar(&format!("{update}= ANY($3) RETURNING id"))
                    .bind(now)
                    .bind(worker)
                    .bind(ids)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(pool) => {
                sqlx::query_scalar(&format!(
                    "{update}IN (SELECT value FROM json_each($3)) RETURNING id"
                ))
                .bind(now)
                .bind(worker)
                .bind(serde_json::json!(ids).to_string())
                .fetch_all(pool)
                .await?
            }
        })
    }

    /// Puts a failed job back in the queue, to run again at `run_at`.
    pub async fn retry_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        run_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        self.settle_job(
            id,
            worker,
            JobState::Pending,
            Some(error),
            Some(run_at),
            now,
        )
        .await
    }

    /// Puts a job back without counting the run as an attempt: it was not its turn.
    pub async fn defer_job(
        &self,
        id: i64,
        worker: &str,
        reason: &str,
        run_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let _writing = self.writing().await;
        let reason = truncated(reason);
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE jobs SET state = 'pending', attempts = attempts - 1, last_error = $1, run_at = $2, \
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $3 \
                 WHERE id = $4 AND state = 'running' AND lease_owner = $5 AND attempts > 0",
            )
            .bind(&reason)
            .bind(run_at)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Gives up on a job: it stays, dead, with its last error, until someone looks at it.
    pub async fn bury_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        self.settle_job(id, worker, JobState::Dead, Some(error), None, now)
            .await
    }

    async fn settle_job(
        &self,
        id: i64,
        worker: &str,
        state: JobState,
        error: Option<&str>,
        run_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let _writing = self.writing().await;
        let finished_at = matches!(state, JobState::Succeeded | JobState::Dead).then_some(now);
        let error = error.map(truncated);
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE jobs SET state = $1, last_error = COALESCE($2, last_error), run_at = COALESCE($3, run_at), \
                 finished_at = $4, lease_owner = NULL, lease_expires_at = NULL, updated_at = $5 \
                 WHERE id = $6 AND state = 'running' AND lease_owner = $7",
            )
            .bind(state.as_str())
            .bind(&error)
            .bind(run_at)
            .bind(finished_at)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(done == 1)
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>, StorageError> {
        let row: Option<JobRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!("{JOB_RECORD} WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        record(row)
    }

    /// The job queued under `unique_key` (`<kind>:<subject>`, e.g. `sms.send:<message id>`).
    pub async fn job_by_key(&self, unique_key: &str) -> Result<Option<JobRecord>, StorageError> {
        let row: Option<JobRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!("{JOB_RECORD} WHERE unique_key = $1"))
                .bind(unique_key)
                .fetch_optional(pool)
                .await
        })?;
        record(row)
    }

    /// How many jobs are in each state (every state listed, zero included).
    pub async fn job_counts(&self) -> Result<Vec<JobCount>, StorageError> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
                .fetch_all(pool)
                .await
        })?;
        JobState::ALL
            .into_iter()
            .map(|state| {
                let count = rows
                    .iter()
                    .find(|(s, _)| s == state.as_str())
                    .map_or(0, |(_, n)| *n);
                Ok(JobCount {
                    state,
                    count: u64::try_from(count).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Deletes jobs that succeeded before `before`; returns how many. Dead jobs are kept.
    pub async fn purge_succeeded_jobs(&self, before: Timestamp) -> Result<u64, StorageError> {
        let _writing = self.writing().await;
        let done = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM jobs WHERE state = 'succeeded' AND finished_at < $1")
                .bind(before)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })?;
        Ok(done)
    }
}

/// A job's row as [`JobRecord`].
fn record(row: Option<JobRow>) -> Result<Option<JobRecord>, StorageError> {
    row.map(|r| {
        Ok(JobRecord {
            id: r.id,
            kind: r.kind,
            payload: r.payload.0,
            unique_key: r.unique_key,
            state: JobState::parse(&r.state)?,
            run_at: r.run_at,
            attempts: counted(r.attempts),
            max_attempts: counted(r.max_attempts),
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at,
            last_error: r.last_error,
            created_at: r.created_at,
            finished_at: r.finished_at,
        })
    })
    .transpose()
}
