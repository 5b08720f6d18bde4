//! The `conversation.expire` job: queued with every conversation, due when its flow's
//! `expire_after` is up. A conversation still open then is closed by the engine's expiry: its
//! answers are kept and `response.expired` is recorded. One already closed is left alone.

use super::{JobFailure, JobFuture, JobHandler};
use crate::http::Flows;
use crate::storage::{ClaimedJob, EXPIRE_JOB, Storage};
use std::sync::Arc;

pub struct ExpireConversation {
    pub storage: Storage,
    pub flows: Arc<Flows>,
    pub send_max_attempts: u32,
    pub clock: crate::time::Clock,
}

impl JobHandler for ExpireConversation {
    fn kind(&self) -> &'static str {
        EXPIRE_JOB
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let (storage, flows, max) = (
            self.storage.clone(),
            Arc::clone(&self.flows),
            self.send_max_attempts,
        );
        let clock = self.clock.clone();
        Box::pin(async move {
            let conversation = job
                .payload
                .get("conversation_id")
                .and_then(|v| v.as_str())
                .ok_or_else(|| JobFailure::Permanent("the payload has no conversation_id".into()))?
                .to_string();
            super::after_first_message(&storage, &conversation, &job.payload, clock.now()).await?;
            let now = clock.now();
            let expired = storage
                .advance_open_conversation(&conversation, max, now, |view| {
                    crate::conversation::expiry(&flows, view, now)
                })
                .await
                .map_err(|e| JobFailure::Retry(e.to_string()))?;
            if expired {
                tracing::info!(%conversation, "conversation expired");
            }
            Ok(())
        })
    }
}
