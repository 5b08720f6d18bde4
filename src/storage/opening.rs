//! Surveys start when their first question is due, not when they are planned.
//!
//! An invitation due at once (no delay, inside the window, or `dispatch.immediate`) is opened in
//! the transaction that records it. One due later — after the flow's delay, on Monday morning
//! for an event of Saturday night, in the morning for a file imported overnight — is recorded
//! with its contact and a single [`OPEN_JOB`] due at its send time, and nothing else. Its job
//! opens it: the conversation, the first question and its send job, the reminder and the expiry,
//! in one transaction for a batch of invitations ([`Storage::open_invitations`]).
//!
//! Why: an import wrote seven rows per line (contact, invitation, conversation, question, and
//! send, reminder and expiry jobs, about thirty index entries); it now writes three. And a survey
//! planned for Monday no longer holds the customer's conversation over the weekend, where a text
//! from them would have been taken as an answer to a question they had not been asked.
//!
//! Until it opens, a scheduled invitation counts as an open conversation on its channel: intake
//! declines a second survey of the same customer on the same channel (`open_conversation`), as it
//! did when the conversation existed from the start.

use super::{
    Advance, BeginWrite, ConversationView, OpeningTimes, Storage, StorageError, WriteSet,
    fetch_by_ids, flush_writes, insert_event, on_pool,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::types::Json;
use std::collections::{HashMap, HashSet};

/// The job that opens an invitation planned for later.
pub const OPEN_JOB: &str = "invitation.open";

/// What intake decided for an invitation opened later, kept in its job's payload: what the
/// invitation's row does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPlan {
    pub invitation_id: String,
    /// The number the conversation is held from (the channel is the invitation's).
    pub sender: String,
    /// The number's country, for the reminder's window.
    pub country: Option<String>,
    /// When the first question was planned to go out.
    pub send_at: Timestamp,
    /// When the conversation closes if it is still open, counted from `send_at`.
    pub expires_at: Timestamp,
    /// When a customer who has not answered is reminded, counted from `send_at`.
    pub remind_at: Option<Timestamp>,
}

/// A scheduled invitation as its opening needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduledInvitation {
    pub id: String,
    pub event_id: String,
    pub flow_id: String,
    pub contact_id: String,
    pub unit_id: Option<String>,
    pub channel: Option<String>,
    pub locale: Option<String>,
    /// The event's variables as the request gave them.
    pub variables: Json<Value>,
}

/// What became of one invitation's opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// Its conversation is open and its first question queued.
    Opened { conversation_id: String },
    /// Opened before (the job ran again after its worker stopped): nothing changed.
    AlreadyOpen,
    /// No longer scheduled (cancelled when its contact was erased), or not found: nothing to do.
    NotScheduled,
    /// Declined, with the reason intake would have given, for what changed since intake: the
    /// number opted out (`opted_out`), the customer has a case that is not closed (`open_case`),
    /// or a conversation on the same sender is open (`open_conversation`).
    Declined(&'static str),
    /// The opening could not be computed (its flow is no longer loaded): failed, with the reason.
    Failed(String),
}

/// The open conversations of the contacts `$ids` (a `&[&str]`), read through `$tx`:
/// `(contact, channel, sender)`, the key of which a contact has at most one.
macro_rules! open_conversations_of {
    ($tx:expr, $ids:expr) => {{
        let rows: Vec<(String, String, String)> = $crate::storage::fetch_by_ids!(
            $tx,
            "SELECT contact_id, channel, sender FROM conversations WHERE status = 'open' AND contact_id",
            $ids,
            ""
        );
        rows.into_iter().collect::<std::collections::HashSet<_>>()
    }};
}
pub(super) use open_conversations_of;

/// Those of the contacts `$ids` (a `&[&str]`) with a case that is not closed, read through
/// `$tx`: a customer in a case is not surveyed meanwhile.
macro_rules! contacts_in_case {
    ($tx:expr, $ids:expr) => {{
        let rows: Vec<(String,)> = $crate::storage::fetch_by_ids!(
            $tx,
            "SELECT contact_id FROM cases WHERE status <> 'closed' AND contact_id",
            $ids,
            ""
        );
        rows.into_iter()
            .map(|(id,)| id)
            .collect::<std::collections::HashSet<String>>()
    }};
}
pub(super) use contacts_in_case;

/// A row of the read of the batch's invitations.
#[derive(sqlx::FromRow)]
struct Candidate {
    #[sqlx(flatten)]
    invitation: ScheduledInvitation,
    status: String,
    opened: bool,
}

impl Storage {
    /// Opens the invitations of `plans` (their jobs' payloads) in one transaction: for each
    /// still scheduled and not opened yet, `opening` computes the engine's first step from the
    /// invitation as stored, and the conversation, its first question (due now), its reminder
    /// and its expiry are written. The reminder and the expiry keep their distance from the
    /// planned send time: an invitation opened an hour late (a backlog, an instance down) is
    /// reminded and expires an hour later. One outcome per plan, in order; running it again
    /// changes nothing.
    pub async fn open_invitations(
        &self,
        plans: &[OpenPlan],
        send_max_attempts: u32,
        now: Timestamp,
        opening: impl Fn(&ScheduledInvitation, &str) -> Result<Advance, String>,
    ) -> Result<Vec<Opening>, StorageError> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let lock = self.row_lock();
        let _writing = self.writing().await;
        let outcomes: HashMap<String, Opening> = on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let ids: Vec<&str> = plans.iter().map(|p| p.invitation_id.as_str()).collect();
            // The contacts first, locked in phone order as intake locks them: an erasure or a
            // customer's text of the same contact applies wholly before or after this opening.
            let contacts: Vec<(String, bool)> = fetch_by_ids!(
                tx,
                "SELECT id, opted_out_at IS NOT NULL FROM contacts \
                 WHERE id IN (SELECT contact_id FROM invitations WHERE id",
                &ids,
                format!(") ORDER BY phone{lock}")
            );
            let opted_out: HashSet<&str> = contacts
                .iter()
                .filter(|(_, opted_out)| *opted_out)
                .map(|(id, _)| id.as_str())
                .collect();
            let contacts: Vec<&str> = contacts.iter().map(|(id, _)| id.as_str()).collect();

            // Then the invitations, as they are now that nobody else changes them.
            let candidates: Vec<Candidate> = fetch_by_ids!(
                tx,
                "SELECT i.id, i.event_id, i.flow_id, i.contact_id, i.unit_id, i.channel, i.locale, \
                 i.variables, i.status, \
                 EXISTS (SELECT 1 FROM conversations c WHERE c.invitation_id = i.id) AS opened \
                 FROM invitations i WHERE i.id",
                &ids,
                ""
            );

            // The open conversations of these contacts: one per (contact, channel, sender);
            // and their cases that are not closed.
            let mut busy = open_conversations_of!(tx, &contacts);
            let in_case = contacts_in_case!(tx, &contacts);

            let mut outcomes: HashMap<String, Opening> = HashMap::with_capacity(plans.len());
            let mut writes = WriteSet::default();
            let mut declined: Vec<(&str, &'static str)> = Vec::new();
            let mut failed: Vec<(&str, &str, String)> = Vec::new();
            for plan in plans {
                let Some(candidate) = candidates
                    .iter()
                    .find(|c| c.invitation.id == plan.invitation_id)
                else {
                    outcomes.insert(plan.invitation_id.clone(), Opening::NotScheduled);
                    continue;
                };
                let invitation = &candidate.invitation;
                if outcomes.contains_key(&invitation.id) {
                    continue;
                }
                let outcome = if candidate.opened {
                    Opening::AlreadyOpen
                } else if candidate.status != "scheduled" {
                    Opening::NotScheduled
                } else {
                    let channel = invitation.channel.clone().unwrap_or_default();
                    let key = (
                        invitation.contact_id.clone(),
                        channel.clone(),
                        plan.sender.clone(),
                    );
                    let conversation_id = uuid::Uuid::now_v7().to_string();
                    match opening(invitation, &conversation_id) {
                        Err(reason) => {
                            failed.push((&invitation.id, &invitation.contact_id, reason.clone()));
                            Opening::Failed(reason)
                        }
                        Ok(_) if opted_out.contains(invitation.contact_id.as_str()) => {
                            declined.push((&invitation.id, "opted_out"));
                            Opening::Declined("opted_out")
                        }
                        Ok(_) if in_case.contains(&invitation.contact_id) => {
                            declined.push((&invitation.id, "open_case"));
                            Opening::Declined("open_case")
                        }
                        Ok(_) if busy.contains(&key) => {
                            declined.push((&invitation.id, "open_conversation"));
                            Opening::Declined("open_conversation")
                        }
                        Ok(advance) => {
                            busy.insert(key);
                            let view = ConversationView {
                                id: conversation_id.clone(),
                                invitation_id: invitation.id.clone(),
                                event_id: invitation.event_id.clone(),
                                flow_id: invitation.flow_id.clone(),
                                contact_id: invitation.contact_id.clone(),
                                channel,
                                sender: plan.sender.clone(),
                                state: Json(Value::Null),
                                version: 1,
                                unit_id: invitation.unit_id.clone(),
                            };
                            let late = std::time::Duration::from_millis(
                                u64::try_from(now.as_millis() - plan.send_at.as_millis())
                                    .unwrap_or(0),
                            );
                            let times = OpeningTimes {
                                send_at: now,
                                expires_at: plan.expires_at + late,
                                remind_at: plan.remind_at.map(|at| at + late),
                            };
                            writes.open(
                                &view,
                                &advance,
                                (times, plan.country.as_deref()),
                                send_max_attempts,
                                now,
                            );
                            Opening::Opened { conversation_id }
                        }
                    }
                };
                outcomes.insert(invitation.id.clone(), outcome);
            }
            for (id, reason) in declined {
                sqlx::query(
                    "UPDATE invitations SET status = 'declined', status_reason = $3, \
                     send_at = NULL, updated_at = $1 WHERE id = $2 AND status = 'scheduled'",
                )
                .bind(now)
                .bind(id)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            }
            for (id, contact, reason) in &failed {
                super::sending::fail_invitation!(
                    tx,
                    *id,
                    *contact,
                    None::<&str>,
                    reason.as_str(),
                    now
                );
            }
            flush_writes!(tx, &writes);
            tx.commit().await?;
            Ok::<_, StorageError>(outcomes)
        })?;
        Ok(plans
            .iter()
            .map(|plan| {
                outcomes
                    .get(&plan.invitation_id)
                    .cloned()
                    .unwrap_or(Opening::NotScheduled)
            })
            .collect())
    }

    /// An invitation whose opening job ran out of attempts: failed, with `retries_exhausted`
    /// (`invitation.failed`), unless it is no longer scheduled or its survey opened meanwhile
    /// (an opening that committed but whose worker stopped before reporting it). Whether it
    /// failed.
    pub async fn fail_unopened_invitation(
        &self,
        invitation_id: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let contact: Option<String> = sqlx::query_scalar(
                "SELECT contact_id FROM invitations WHERE id = $1 AND status = 'scheduled' \
                 AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.invitation_id = $1)",
            )
            .bind(invitation_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(contact) = contact else {
                tx.rollback().await?;
                return Ok(false);
            };
            super::sending::fail_invitation!(
                tx,
                invitation_id,
                &contact,
                None::<&str>,
                "retries_exhausted",
                now
            );
            tx.commit().await?;
            Ok(true)
        })
    }
}
