//! Upkeep that hearback schedules for itself.

use super::{JobFailure, JobFuture, JobHandler};
use crate::storage::{ClaimedJob, NewJob, Storage, StorageError};
use crate::time::Timestamp;
use serde_json::json;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Deletes succeeded jobs past their retention once a day, so the queue table stays small.
/// Each run queues the next one; the per-day unique key keeps one run a day across instances.
#[derive(Clone)]
pub struct PurgeFinishedJobs {
    pub storage: Storage,
    pub retention: Duration,
}

impl PurgeFinishedJobs {
    pub const KIND: &'static str = "maintenance.purge_finished_jobs";

    /// Queues the run for `at`'s day, unless one is already queued.
    pub async fn schedule(
        storage: &Storage,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<i64, StorageError> {
        let day = at.as_datetime().format("%Y-%m-%d");
        let job = NewJob {
            kind: Self::KIND.into(),
            payload: json!({}),
            run_at: at,
            max_attempts: 5,
            unique_key: Some(format!("{}:{day}", Self::KIND)),
        };
        storage.enqueue_job(&job, now).await
    }
}

impl JobHandler for PurgeFinishedJobs {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn run(&self, _job: ClaimedJob) -> JobFuture {
        let this = self.clone();
        Box::pin(async move {
            let now = Timestamp::now();
            let retry = |e: StorageError| JobFailure::Retry(e.to_string());
            let purged = this
                .storage
                .purge_succeeded_jobs(now - this.retention)
                .await
                .map_err(retry)?;
            tracing::info!(purged, "purged succeeded jobs past retention");
            Self::schedule(&this.storage, now + DAY, now)
                .await
                .map_err(retry)?;
            Ok(())
        })
    }
}
