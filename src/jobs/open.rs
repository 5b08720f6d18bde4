//! The `invitation.open` job: queued with an invitation whose first question is due later, due
//! then. It starts the conversation from the invitation as stored, with the flow as loaded now,
//! and queues the first question (storage::opening). It runs in the texts' lane, a batch at a
//! time: a morning's worth of imported surveys opens in a few transactions, not one each.

use super::{BatchFuture, JobFailure, JobFuture, JobHandler};
use crate::conversation::{self, ConversationIds};
use crate::http::Flows;
use crate::storage::{
    Advance, ClaimedJob, OPEN_JOB, OpenPlan, Opening, ScheduledInvitation, Storage,
};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct OpenInvitation {
    pub storage: Storage,
    pub flows: Arc<Flows>,
    pub send_max_attempts: u32,
    pub clock: crate::time::Clock,
}

impl JobHandler for OpenInvitation {
    fn kind(&self) -> &'static str {
        OPEN_JOB
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let batch = self.run_batch(vec![job]);
        Box::pin(async move { batch.await.pop().expect("one outcome per job") })
    }

    /// An opening out of attempts fails its invitation, so that the company hears of it
    /// (`invitation.failed`), rather than leaving it scheduled for ever.
    fn abandon(&self, job: ClaimedJob) -> JobFuture {
        let (storage, now) = (self.storage.clone(), self.clock.now());
        Box::pin(async move {
            let Ok(plan) = serde_json::from_value::<OpenPlan>(job.payload) else {
                return Ok(());
            };
            if storage
                .fail_unopened_invitation(&plan.invitation_id, now)
                .await
                .map_err(|e| JobFailure::Retry(e.to_string()))?
            {
                tracing::warn!(invitation = %plan.invitation_id, "the survey's opening ran out of attempts; the invitation failed");
            }
            Ok(())
        })
    }

    fn run_batch(&self, jobs: Vec<ClaimedJob>) -> BatchFuture {
        let (storage, flows, max) = (
            self.storage.clone(),
            Arc::clone(&self.flows),
            self.send_max_attempts,
        );
        let now = self.clock.now();
        Box::pin(async move {
            // A payload that does not parse fails its job alone.
            let plans: Vec<Result<OpenPlan, JobFailure>> = jobs
                .iter()
                .map(|job| {
                    serde_json::from_value(job.payload.clone()).map_err(|e| {
                        JobFailure::Permanent(format!("the payload is not an opening plan: {e}"))
                    })
                })
                .collect();
            let valid: Vec<OpenPlan> = plans
                .iter()
                .filter_map(|p| p.as_ref().ok())
                .cloned()
                .collect();
            let opened = storage
                .open_invitations(&valid, max, now, |invitation, conversation_id| {
                    opening(&flows, invitation, conversation_id, now)
                })
                .await;
            let mut opened = match opened {
                Ok(outcomes) => outcomes.into_iter(),
                Err(e) => {
                    let failure = JobFailure::Retry(e.to_string());
                    return jobs.iter().map(|_| Err(failure.clone())).collect();
                }
            };
            plans
                .into_iter()
                .map(|plan| {
                    let plan = plan?;
                    match opened.next().expect("one outcome per plan") {
                        Opening::Opened { conversation_id } => {
                            tracing::debug!(invitation = %plan.invitation_id, conversation = %conversation_id, "survey opened");
                        }
                        Opening::Declined(reason) => {
                            tracing::info!(invitation = %plan.invitation_id, reason, "declined at its opening");
                        }
                        Opening::Failed(reason) => {
                            tracing::warn!(invitation = %plan.invitation_id, %reason, "survey could not be opened; the invitation failed");
                        }
                        Opening::AlreadyOpen | Opening::NotScheduled => {}
                    }
                    Ok(())
                })
                .collect()
        })
    }
}

/// The engine's first step for a stored invitation, with the flow as loaded now; refused with
/// the invitation's failure reason when the flow is gone (`unknown_flow`) or now needs a
/// variable the event did not give (`missing_variable`).
pub fn opening(
    flows: &Flows,
    invitation: &ScheduledInvitation,
    conversation_id: &str,
    now: crate::time::Timestamp,
) -> Result<Advance, String> {
    let flow = flows
        .get(&invitation.flow_id)
        .ok_or_else(|| "unknown_flow".to_string())?;
    let variables: BTreeMap<String, String> = invitation
        .variables
        .0
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.clone(), crate::intake::variable_text(value)?))
                })
                .collect()
        })
        .unwrap_or_default();
    // A flow edited since the invitation may need a variable the event did not give: the
    // customer would get the raw `{{name}}`.
    if flow
        .variables
        .iter()
        .any(|name| !variables.contains_key(name))
    {
        return Err("missing_variable".to_string());
    }
    let lang = conversation::language(flow, invitation.locale.as_deref());
    Ok(conversation::opening(
        flow,
        lang,
        variables,
        &ConversationIds {
            conversation_id,
            invitation_id: &invitation.id,
            event_id: &invitation.event_id,
            contact_id: &invitation.contact_id,
        },
        now,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sqlx::types::Json;

    fn invitation(flow_id: &str, variables: serde_json::Value) -> ScheduledInvitation {
        ScheduledInvitation {
            id: "inv-1".into(),
            event_id: "order-1".into(),
            flow_id: flow_id.into(),
            contact_id: "contact-1".into(),
            unit_id: None,
            channel: Some("console".into()),
            locale: Some("en-GB".into()),
            variables: Json(variables),
        }
    }

    #[test]
    fn a_stored_invitation_opens_with_the_flow_as_loaded_or_fails_with_the_reason() {
        let flows =
            crate::flow::load_paths(&[concat!(env!("CARGO_MANIFEST_DIR"), "/flows").into()]).flows;
        let now = crate::time::Timestamp::now();
        let complete = json!({ "first_name": "Ana", "store": "Lyon 2", "order_date": "12/11" });
        let opened = opening(&flows, &invitation("delivery", complete), "conv-1", now).unwrap();
        assert_eq!(opened.messages.len(), 1, "{opened:?}");
        assert!(
            opened.messages[0].starts_with("Hello Ana, after your Lyon 2 delivery"),
            "{opened:?}"
        );
        // Numbers and booleans are text to the templates, as at intake.
        let numbers = json!({ "first_name": "Ana", "store": 42, "order_date": true });
        let opened = opening(&flows, &invitation("delivery", numbers), "conv-1", now).unwrap();
        assert!(
            opened.messages[0].contains("your 42 delivery of true"),
            "{opened:?}"
        );
        // A flow that now needs a variable the event did not give, and a flow gone.
        let missing = json!({ "first_name": "Ana", "store": "Lyon 2" });
        assert_eq!(
            opening(&flows, &invitation("delivery", missing), "conv-1", now).unwrap_err(),
            "missing_variable"
        );
        assert_eq!(
            opening(&flows, &invitation("gone", json!({})), "conv-1", now).unwrap_err(),
            "unknown_flow"
        );
    }
}
