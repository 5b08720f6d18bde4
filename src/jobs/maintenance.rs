//! Upkeep that hearback schedules for itself.

use super::{JobFailure, JobFuture, JobHandler};
use crate::storage::{ClaimedJob, NewJob, Storage, StorageError};
use crate::time::Timestamp;
use serde_json::json;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Deletes succeeded jobs past their retention once a day, so the queue table stays small, and
/// keeps the long SMS whose other parts never came ([`flush_incomplete_messages`]). Each run
/// queues the next one before its work, so that one that fails for good does not end the
/// chain; the per-day unique key keeps one run a day across instances.
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
        storage.enqueue_job(&daily_job(Self::KIND, at), now).await
    }
}

/// The run of a daily job `kind` for `at`'s day: its key is the day's, so that one run a day is
/// queued across instances however many ask.
pub(crate) fn daily_job(kind: &str, at: Timestamp) -> NewJob {
    let day = at.as_datetime().format("%Y-%m-%d");
    NewJob {
        kind: kind.into(),
        payload: json!({}),
        run_at: at,
        max_attempts: 5,
        unique_key: Some(format!("{kind}:{day}")),
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
            // Tomorrow's run first: a run that fails for good must not end the daily chain.
            Self::schedule(&this.storage, now + DAY, now)
                .await
                .map_err(retry)?;
            let purged = this
                .storage
                .purge_succeeded_jobs(now - this.retention)
                .await
                .map_err(retry)?;
            tracing::info!(purged, "purged succeeded jobs past retention");
            let flushed = flush_incomplete_messages(&this.storage, now - DAY, now)
                .await
                .map_err(retry)?;
            if flushed > 0 {
                tracing::warn!(flushed, "kept long SMS whose other parts never arrived");
            }
            Ok(())
        })
    }
}

/// What marks a part that never arrived, in a message kept incomplete.
pub const MISSING_PART: &str = "[…]";

/// Records, as they are, the long SMS whose parts stopped arriving before `before` (a provider
/// that lost one): what the customer wrote is kept, with [`MISSING_PART`] for each part that never
/// came, under its first received part's id. It is kept only, never read as an answer: half a
/// reply could mean anything. Returns how many messages were kept.
pub async fn flush_incomplete_messages(
    storage: &Storage,
    before: Timestamp,
    now: Timestamp,
) -> Result<usize, StorageError> {
    let stale = storage.stale_message_parts(before).await?;
    let mut groups: Vec<Vec<(String, Timestamp, crate::storage::MessagePart)>> = Vec::new();
    for entry in stale {
        match groups.last_mut() {
            Some(group)
                if group[0].0 == entry.0
                    && group[0].2.sender == entry.2.sender
                    && group[0].2.reference == entry.2.reference =>
            {
                group.push(entry)
            }
            _ => groups.push(vec![entry]),
        }
    }
    for group in &groups {
        let (channel, _, first) = &group[0];
        let parts: Vec<(i32, &str)> = group
            .iter()
            .map(|(_, _, part)| (part.part_index, part.body.as_str()))
            .collect();
        let from = crate::phone::Phone::parse(&first.sender, None).ok();
        storage
            .receive_inbound(&crate::storage::NewInbound {
                channel,
                provider_message_id: &first.provider_message_id,
                to: &first.recipient,
                from: from.as_ref(),
                body: &join_parts(&parts, first.part_total),
                consent: None,
                received_at: group.iter().map(|(_, at, _)| *at).min().unwrap_or(now),
            })
            .await?;
        storage
            .forget_message_parts(channel, &first.sender, &first.reference)
            .await?;
    }
    Ok(groups.len())
}

/// The parts in order, each missing one replaced by [`MISSING_PART`].
fn join_parts(parts: &[(i32, &str)], total: i32) -> String {
    (1..=total)
        .map(|index| {
            parts
                .iter()
                .find(|(i, _)| *i == index)
                .map_or(MISSING_PART, |(_, body)| *body)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parts_are_marked_where_they_belong() {
        assert_eq!(
            join_parts(&[(1, "Bonjour, "), (3, " merci")], 3),
            "Bonjour, […] merci"
        );
        assert_eq!(join_parts(&[(2, "fin")], 2), "[…]fin");
    }
}
