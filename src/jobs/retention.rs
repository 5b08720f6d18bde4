//! `[privacy] retention_days`: personal data is kept that long, then emptied or anonymised
//! (see `Storage::apply_retention` and docs/privacy.md), once a day.

use super::{JobFailure, JobFuture, JobHandler};
use crate::storage::{ClaimedJob, Storage, StorageError};
use crate::time::{Clock, Timestamp};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The daily retention run. Each run queues the next before its work, so that one that fails
/// for good does not end the chain; the per-day unique key keeps one run a day across
/// instances. Reads "now" from `clock`, so that tests let the days pass.
#[derive(Clone)]
pub struct ApplyRetention {
    pub storage: Storage,
    pub retention: Duration,
    pub clock: Clock,
}

impl ApplyRetention {
    pub const KIND: &'static str = "privacy.retention";

    /// Queues the run for `at`'s day, unless one is already queued.
    pub async fn schedule(
        storage: &Storage,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<i64, StorageError> {
        storage
            .enqueue_job(&super::maintenance::daily_job(Self::KIND, at), now)
            .await
    }
}

impl JobHandler for ApplyRetention {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn run(&self, _job: ClaimedJob) -> JobFuture {
        let this = self.clone();
        Box::pin(async move {
            let now = this.clock.now();
            let retry = |e: StorageError| JobFailure::Retry(e.to_string());
            // Tomorrow's run first: a run that fails for good must not end the daily chain.
            Self::schedule(&this.storage, now + DAY, now)
                .await
                .map_err(retry)?;
            let done = this
                .storage
                .apply_retention(now - this.retention, now)
                .await
                .map_err(retry)?;
            tracing::info!(
                messages = done.messages_emptied,
                answers = done.answers_emptied,
                invitations = done.invitations_emptied,
                contacts = done.contacts_anonymised,
                "personal data past retention removed"
            );
            Ok(())
        })
    }
}
