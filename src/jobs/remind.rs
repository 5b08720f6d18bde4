//! The `conversation.remind` job: queued with an invitation whose flow has a `reminder`, due
//! its `after` past the first message, inside the sending window. A customer who has not written
//! at all by then gets the reminder once; one who has, or a conversation already closed, is left
//! alone (the engine decides). Run late (a backlog), it waits for the window to open again.

use super::{JobFailure, JobFuture, JobHandler};
use crate::http::Flows;
use crate::schedule::SchedulingRules;
use crate::storage::{ClaimedJob, REMIND_JOB, Storage};
use std::sync::Arc;

pub struct RemindConversation {
    pub storage: Storage,
    pub flows: Arc<Flows>,
    /// `None`: `dispatch.immediate`, no window.
    pub scheduling: Option<Arc<SchedulingRules>>,
    pub send_max_attempts: u32,
    pub clock: crate::time::Clock,
}

impl JobHandler for RemindConversation {
    fn kind(&self) -> &'static str {
        REMIND_JOB
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let (storage, flows, scheduling, max) = (
            self.storage.clone(),
            Arc::clone(&self.flows),
            self.scheduling.clone(),
            self.send_max_attempts,
        );
        let clock = self.clock.clone();
        Box::pin(async move {
            let field = |name: &str| job.payload.get(name).and_then(|v| v.as_str());
            let conversation = field("conversation_id")
                .ok_or_else(|| JobFailure::Permanent("the payload has no conversation_id".into()))?
                .to_string();
            super::after_first_message(&storage, &conversation, &job.payload, clock.now()).await?;
            let now = clock.now();
            if let Some(scheduling) = &scheduling {
                let narrowing = field("flow")
                    .and_then(|id| flows.get(id))
                    .and_then(|flow| flow.dispatch.window.as_ref());
                if let Some(opens) =
                    scheduling.hold_until(now.as_datetime(), field("country"), narrowing)
                {
                    let wait = (opens - now.as_datetime()).to_std().unwrap_or_default();
                    return Err(JobFailure::Later(
                        wait,
                        "outside the sending window in the customer's local time".into(),
                    ));
                }
            }
            let reminded = storage
                .advance_open_conversation(&conversation, max, now, |view| {
                    crate::conversation::reminder(&flows, view, now)
                })
                .await
                .map_err(|e| JobFailure::Retry(e.to_string()))?;
            if reminded {
                tracing::info!(%conversation, "reminder queued");
            }
            Ok(())
        })
    }
}
