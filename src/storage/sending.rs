//! Outgoing messages: what the send jobs read and record, delivery statuses applied in order, and
//! the channel leases that keep one instance at a time sending through a channel.
//!
//! A message moves `queued → sending → sent → delivered` (or a failure). `sending` is written and
//! committed before the provider is called, so a worker that dies during the call leaves a trace:
//! the next attempt finds `sending`, cannot know whether the provider accepted the message, and
//! marks it `unknown` instead of sending it a second time.
//!
//! Statuses never move backwards: each has a rank, and a callback applies only when it ranks
//! above the message's current status (a late "sent" does not undo "delivered"). A callback that
//! arrives before the send is recorded is kept by provider id and applied when the send is.

use super::bulk::BulkWrite;
use super::{Backend, BeginWrite, NewStatus, Storage, StorageError, insert_event, on_pool};
use crate::time::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

/// How far along each status is; a status applies only over a lower rank. Any other status
/// (delivered, failed_permanent) is final.
const STATUS_RANKS: [(&str, u8); 6] = [
    ("received", 0),
    ("queued", 0),
    ("sending", 1),
    ("unknown", 1),
    ("sent", 2),
    ("failed_temporary", 3),
];
const FINAL_RANK: u8 = 4;

/// How far along a message's status is; a status applies only over a lower rank.
pub fn status_rank(status: &str) -> u8 {
    STATUS_RANKS
        .iter()
        .find(|(name, _)| *name == status)
        .map_or(FINAL_RANK, |(_, rank)| *rank)
}

/// [`status_rank`] of the `status` column, in SQL, from the same table.
static STATUS_RANK_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let cases: String = STATUS_RANKS
        .iter()
        .map(|(name, rank)| format!(" WHEN '{name}' THEN {rank}"))
        .collect();
    format!("(CASE status{cases} ELSE {FINAL_RANK} END)")
});

/// An outgoing message as a send job needs it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutgoingMessage {
    pub id: String,
    pub channel: String,
    pub sender: Option<String>,
    pub contact_id: String,
    /// The recipient, E.164.
    pub phone: String,
    pub body: String,
    pub status: String,
    pub conversation_id: Option<String>,
    pub invitation_id: Option<String>,
    /// The invitation's status when the message was read: only a `scheduled` one becomes `sent`.
    pub invitation_status: Option<String>,
    /// The conversation's flow, for its sending window.
    pub flow_id: Option<String>,
    /// The invitation's unit, for its daily spend cap.
    pub unit_id: Option<String>,
    pub segments: Option<i32>,
    pub created_at: Timestamp,
    /// A text still queued that is no longer wanted, held meanwhile by an SMS-pumping guard, a
    /// provider outage or the window: a survey's reminder when the customer has written since it
    /// was queued or the conversation has closed; a case's recovery question (its one unprompted
    /// text) when the case has closed. An agent's text always goes. Never sent
    /// ([`Storage::withdraw_message`]).
    pub superseded: bool,
}

/// Where a conversation's first question is ([`Storage::first_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstMessage {
    /// Not gone out yet: its invitation is `scheduled` or `held` (the window, an SMS-pumping
    /// guard, a provider outage).
    Waiting,
    /// Gone out, at `sent_at` (its `sending` mark) when that is known.
    Out { sent_at: Option<Timestamp> },
    /// No such conversation.
    Missing,
}

/// What became of a send that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure<'a> {
    /// `queued` (it will be tried again), `failed_permanent`, or `unknown` (the provider may have
    /// it; it is not sent again).
    pub status: &'static str,
    pub error_code: Option<&'a str>,
    /// What the failure says about the number: `invalid`, `landline` or `unreachable`, or
    /// `opted_out` when the customer opted out at the carrier.
    pub number_status: Option<&'static str>,
}

/// What a send cost, added to its unit's spend of `day` (`YYYY-MM-DD` in the dispatch zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend<'a> {
    pub micros: i64,
    pub day: &'a str,
}

/// A send the provider accepted, to record.
#[derive(Debug, Clone, Copy)]
pub struct SentMessage<'a> {
    pub message: &'a OutgoingMessage,
    pub provider_message_id: &'a str,
    pub cost: Option<Spend<'a>>,
    /// When it was handed to the provider, when later than its `sending` mark (a batch marks
    /// its messages together and hands them over at the channel's pace).
    pub handed_at: Option<Timestamp>,
}

/// What a contact and a unit have had today, for the SMS-pumping guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUse {
    /// Texts hearback started (openings, reminders) that went to the contact's number since the
    /// day began.
    pub contact_texts: i64,
    /// What the unit spent today, in millionths.
    pub unit_spend_micros: i64,
}

/// An outgoing message of a console channel, for `GET /api/v1/console/messages`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleMessage {
    pub id: String,
    pub channel: String,
    pub sender: Option<String>,
    pub to: String,
    pub body: String,
    pub status: String,
    pub purpose: Option<String>,
    pub segments: Option<i32>,
    pub created_at: Timestamp,
}

/// Records on the contact what a permanent failure said about its number, through `$tx`:
/// `invalid`, `landline` or `unreachable` as its number status; `opted_out` (the customer opted
/// out at the carrier) as an opt-out, as a STOP would be: never texted again, the change kept in
/// `contact_consents` (source `carrier:<channel>`) and `contact.opted_out` recorded.
macro_rules! flag_number {
    ($tx:expr, $contact:expr, $number_status:expr, $now:expr, ($channel:expr, $message:expr)) => {{
        if let Some(number_status) = $number_status {
            let number_status: &str = number_status.as_ref();
            if number_status == OPTED_OUT_AT_CARRIER {
                let phone: Option<String> = sqlx::query_scalar(
                    "UPDATE contacts SET opted_out_at = $1, updated_at = $1 \
                     WHERE id = $2 AND opted_out_at IS NULL RETURNING phone",
                )
                .bind($now)
                .bind($contact)
                .fetch_optional(&mut *$tx)
                .await?;
                if let Some(phone) = phone {
                    let source = format!("carrier:{}", $channel);
                    sqlx::query(
                        "INSERT INTO contact_consents (contact_id, change, source, at) VALUES ($1, 'opted_out', $2, $3)",
                    )
                    .bind($contact)
                    .bind(&source)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                    let data = json!({
                        "contact": { "id": $contact, "phone": phone },
                        "channel": $channel,
                        "source": source,
                        "message_id": $message,
                    });
                    insert_event!($tx, "contact.opted_out", $contact, &data, $now);
                }
            } else {
                sqlx::query("UPDATE contacts SET number_status = $1, updated_at = $2 WHERE id = $3")
                    .bind(number_status)
                    .bind($now)
                    .bind($contact)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    }};
}

/// What a permanent failure says when the customer opted out at the carrier (see
/// [`flag_number`]); the other values are the contact's `number_status`.
pub const OPTED_OUT_AT_CARRIER: &str = "opted_out";

/// Marks the invitation of `$invitation` failed (once) and records `invitation.failed`.
macro_rules! fail_invitation {
    ($tx:expr, $invitation:expr, $contact:expr, $message:expr, $reason:expr, $now:expr) => {{
        let failed = sqlx::query(
            "UPDATE invitations SET status = 'failed', status_reason = $1, updated_at = $2 \
             WHERE id = $3 AND status IN ('scheduled', 'held', 'sent')",
        )
        .bind($reason)
        .bind($now)
        .bind($invitation)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if failed == 1 {
            sqlx::query(
                "UPDATE conversations SET status = 'expired', closed_at = $1, updated_at = $1, version = version + 1 \
                 WHERE invitation_id = $2 AND status = 'open'",
            )
            .bind($now)
            .bind($invitation)
            .execute(&mut *$tx)
            .await?;
            let data = json!({
                "invitation": { "id": $invitation },
                "contact": { "id": $contact },
                "message_id": $message,
                "reason": $reason,
            });
            insert_event!($tx, "invitation.failed", $contact, &data, $now);
        }
    }};
}
pub(super) use fail_invitation;

/// The data of `invitation.sent`, for the invitation's first text `message`.
fn invitation_sent(invitation: &str, message: &OutgoingMessage) -> Value {
    json!({
        "invitation": { "id": invitation },
        "contact": { "id": message.contact_id },
        "channel": message.channel,
        "message_id": message.id,
    })
}

impl Storage {
    pub async fn outgoing_message(
        &self,
        id: &str,
    ) -> Result<Option<OutgoingMessage>, StorageError> {
        Ok(self.outgoing_messages(&[id]).await?.pop())
    }

    /// The outgoing messages of `ids` that exist, in no particular order: one statement for a
    /// batch of send jobs.
    pub async fn outgoing_messages(
        &self,
        ids: &[&str],
    ) -> Result<Vec<OutgoingMessage>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // `superseded`: message ids are UUIDv7, in the order they were made, so a customer's
        // text whose id sorts after the reminder's came after it was queued. A case's texts
        // have no conversation (`m.conversation_id` is null).
        // One statement text whatever the batch's size: prepared and planned once per
        // connection (an `IN` list of each size was planned anew: a third of the time this read
        // cost PostgreSQL).
        let select = "SELECT m.id, m.channel, m.sender, m.contact_id, ct.phone, m.body, m.status, \
             m.conversation_id, c.invitation_id, i.status AS invitation_status, c.flow_id, i.unit_id, m.segments, m.created_at, \
             CASE WHEN m.status <> 'queued' THEN FALSE \
             WHEN m.case_id IS NOT NULL \
             THEN m.unprompted AND EXISTS (SELECT 1 FROM cases k WHERE k.id = m.case_id AND k.status = 'closed') \
             WHEN m.unprompted AND m.purpose = 'survey' AND i.status NOT IN ('scheduled', 'held') \
             THEN (c.status <> 'open' OR EXISTS (SELECT 1 FROM messages r \
               WHERE r.conversation_id = m.conversation_id AND r.direction = 'inbound' \
               AND r.id > m.id)) \
             ELSE FALSE END AS superseded FROM messages m \
             JOIN contacts ct ON ct.id = m.contact_id \
             LEFT JOIN conversations c ON c.id = m.conversation_id \
             LEFT JOIN invitations i ON i.id = c.invitation_id \
             WHERE m.direction = 'outbound' AND m.id ";
        Ok(match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_as(&format!("{select}= ANY($1)"))
                    .bind(ids)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(pool) => {
                sqlx::query_as(&format!("{select}IN (SELECT value FROM json_each($1))"))
                    .bind(json!(ids).to_string())
                    .fetch_all(pool)
                    .await?
            }
        })
    }

    /// What `contact` and `unit` have had on `day` (which began at `since`): the texts hearback
    /// started to the contact (answers to what the customer wrote are not counted), the unit's
    /// spend.
    pub async fn daily_use(
        &self,
        contact_id: &str,
        unit_id: Option<&str>,
        (since, day): (Timestamp, &str),
    ) -> Result<DailyUse, StorageError> {
        on_pool!(self, |pool| {
            let contact_texts: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages WHERE contact_id = $1 AND sent_at >= $2 AND unprompted",
            )
            .bind(contact_id)
            .bind(since)
            .fetch_one(pool)
            .await?;
            let unit_spend_micros: Option<i64> =
                match unit_id {
                    None => None,
                    Some(unit) => sqlx::query_scalar(
                        "SELECT cost_micros FROM unit_daily_spend WHERE unit_id = $1 AND day = $2",
                    )
                    .bind(unit)
                    .bind(day)
                    .fetch_optional(pool)
                    .await?,
                };
            Ok(DailyUse {
                contact_texts,
                unit_spend_micros: unit_spend_micros.unwrap_or(0),
            })
        })
    }

    /// Whether the conversation's first question has gone out, and when.
    pub async fn first_message(&self, conversation_id: &str) -> Result<FirstMessage, StorageError> {
        let row: Option<(String, Option<Timestamp>)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT i.status, (SELECT MIN(m.sent_at) FROM messages m \
                 WHERE m.conversation_id = c.id AND m.direction = 'outbound') \
                 FROM conversations c JOIN invitations i ON i.id = c.invitation_id WHERE c.id = $1",
            )
            .bind(conversation_id)
            .fetch_optional(pool)
            .await
        })?;
        Ok(match row {
            Some((status, ..)) if matches!(status.as_str(), "scheduled" | "held") => {
                FirstMessage::Waiting
            }
            Some((_, sent_at)) => FirstMessage::Out { sent_at },
            None => FirstMessage::Missing,
        })
    }

    /// Marks an invitation held by a guard (`contact_daily_cap`, `unit_spend_cap`): reported,
    /// and sent when the guard allows it.
    pub async fn hold_invitation(
        &self,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE invitations SET status = 'held', status_reason = $1, updated_at = $2 \
                 WHERE id = $3 AND status IN ('scheduled', 'held')",
            )
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await
            .map(drop)
        })?;
        Ok(())
    }

    /// Gives up a text no longer wanted ([`OutgoingMessage::superseded`]): `failed_permanent`
    /// with `superseded`, its invitation, case and contact left as they are. False
    /// when the text is no longer queued (an earlier run settled it).
    pub async fn withdraw_message(&self, id: &str, now: Timestamp) -> Result<bool, StorageError> {
        let _writing = self.writing().await;
        let withdrawn = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE messages SET status = 'failed_permanent', error_code = 'superseded', \
                 updated_at = $1 WHERE id = $2 AND status = 'queued'",
            )
            .bind(now)
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(withdrawn == 1)
    }

    /// Claims a queued message for one send; false when it is not queued (sent already, being
    /// sent, or given up) or when its number has opted out since it was read (only the opt-out
    /// confirmation still goes to such a number). The opt-out is checked in this statement, so a
    /// STOP committed before it always wins.
    pub async fn mark_sending(&self, id: &str, now: Timestamp) -> Result<bool, StorageError> {
        Ok(!self.mark_sending_many(&[id], now).await?.is_empty())
    }

    /// [`Storage::mark_sending`] for a batch, in one statement: returns the ids claimed.
    pub async fn mark_sending_many(
        &self,
        ids: &[&str],
        now: Timestamp,
    ) -> Result<std::collections::HashSet<String>, StorageError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let _writing = self.writing().await;
        let update = "UPDATE messages SET status = 'sending', sent_at = $1, updated_at = $1 WHERE status = 'queued' \
             AND (purpose = 'opt_out_confirmation' OR NOT EXISTS \
               (SELECT 1 FROM contacts c WHERE c.id = messages.contact_id AND c.opted_out_at IS NOT NULL)) \
             AND id ";
        let marked: Vec<String> = match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_scalar(&format!("{update}= ANY($2) RETURNING id"))
                    .bind(now)
                    .bind(ids)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(pool) => {
                sqlx::query_scalar(&format!(
                    "{update}IN (SELECT value FROM json_each($2)) RETURNING id"
                ))
                .bind(now)
                .bind(json!(ids).to_string())
                .fetch_all(pool)
                .await?
            }
        };
        Ok(marked.into_iter().collect())
    }

    /// Records what the provider accepted, applies the statuses that arrived before it, and
    /// marks the invitation sent (`invitation.sent`) on its first message.
    pub async fn record_sent(
        &self,
        message: &OutgoingMessage,
        provider_message_id: &str,
        cost: Option<Spend<'_>>,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        self.record_sent_many(
            &[SentMessage {
                message,
                provider_message_id,
                cost,
                handed_at: None,
            }],
            now,
        )
        .await
    }

    /// [`Storage::record_sent`] for a batch of sends, in one transaction (one commit) and a
    /// fixed number of statements however many it holds; only a message whose statuses arrived
    /// before its send takes statements of its own.
    pub async fn record_sent_many(
        &self,
        sent: &[SentMessage<'_>],
        now: Timestamp,
    ) -> Result<(), StorageError> {
        if sent.is_empty() {
            return Ok(());
        }
        // Status callbacks take the same per-message locks one at a time; the batch takes them
        // in one order (`BulkWrite::lock_keys`), so that two batches do not wait on each other.
        let keys: Vec<String> = sent
            .iter()
            .map(|s| {
                self.status_lock(&s.message.channel, s.provider_message_id)
                    .1
            })
            .collect();
        // Each unit's spend of the day, added once.
        let mut spend: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for one in sent {
            if let (Some(cost), Some(unit)) = (one.cost, &one.message.unit_id) {
                *spend.entry((unit.as_str(), cost.day)).or_default() += cost.micros;
            }
        }
        // An invitation's first message finds it `scheduled` (or `held`); the others leave it.
        let first: Vec<&SentMessage<'_>> = sent
            .iter()
            .filter(|s| s.message.invitation_id.is_some())
            .filter(|s| {
                matches!(
                    s.message.invitation_status.as_deref(),
                    Some("scheduled" | "held")
                )
            })
            .collect();
        let by_id: HashMap<&str, &OutgoingMessage> = sent
            .iter()
            .map(|s| (s.message.id.as_str(), s.message))
            .collect();
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            tx.lock_keys(&keys).await?;
            tx.mark_sent(sent, now).await?;
            if !spend.is_empty() {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO unit_daily_spend (unit_id, day, cost_micros) ",
                );
                insert.push_values(&spend, |mut row, ((unit, day), micros)| {
                    row.push_bind(*unit).push_bind(*day).push_bind(*micros);
                });
                insert.push(
                    " ON CONFLICT (unit_id, day) DO UPDATE \
                     SET cost_micros = unit_daily_spend.cost_micros + excluded.cost_micros",
                );
                let kept = super::kept(&tx);
                insert.build().persistent(kept).execute(&mut *tx).await?;
            }
            // Statuses that arrived before the send, kept by the provider's id.
            let early = tx.adopt_statuses(sent).await?;
            // The furthest status each message had, when it is past `sent`.
            let mut latest: BTreeMap<&str, (String, Option<String>, Option<String>)> =
                BTreeMap::new();
            for (id, status, error_code, number_status) in &early {
                let Some((id, _)) = by_id.get_key_value(id.as_str()) else {
                    continue;
                };
                let further = latest
                    .get(id)
                    .is_none_or(|(kept, _, _)| status_rank(status) > status_rank(kept));
                if status_rank(status) > status_rank("sent") && further {
                    latest.insert(
                        id,
                        (status.clone(), error_code.clone(), number_status.clone()),
                    );
                }
            }
            for (id, (status, error_code, number_status)) in &latest {
                let message = by_id[id];
                flag_number!(
                    tx,
                    &message.contact_id,
                    number_status,
                    now,
                    (&message.channel, &message.id)
                );
                sqlx::query("UPDATE messages SET status = $1, error_code = $2 WHERE id = $3")
                    .bind(status)
                    .bind(error_code)
                    .bind(&message.id)
                    .execute(&mut *tx)
                    .await?;
            }
            if !first.is_empty() {
                let mut update = sqlx::QueryBuilder::new(
                    "UPDATE invitations SET status = 'sent', status_reason = NULL, updated_at = ",
                );
                update
                    .push_bind(now)
                    .push(" WHERE status IN ('scheduled', 'held') AND id");
                let invitations: Vec<&str> = first
                    .iter()
                    .filter_map(|one| one.message.invitation_id.as_deref())
                    .collect();
                super::push_list(&tx, &mut update, &invitations);
                update.push(" RETURNING id");
                let kept = super::kept(&tx);
                let now_sent: HashSet<String> = update
                    .build_query_scalar()
                    .persistent(kept)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect();
                // Two first messages of one invitation: the event names the first in the batch.
                let mut events = super::WriteSet::default();
                let mut told = HashSet::new();
                for one in &first {
                    let message = one.message;
                    let invitation = message.invitation_id.as_deref().unwrap_or_default();
                    if now_sent.contains(invitation) && told.insert(invitation) {
                        events.event(
                            "invitation.sent",
                            Some(&message.contact_id),
                            invitation_sent(invitation, message),
                            now,
                        );
                    }
                }
                super::flush_writes!(tx, &events);
            }
            for (id, (status, error_code, number_status)) in &latest {
                let message = by_id[id];
                if let (Some(invitation), "failed_permanent") =
                    (&message.invitation_id, status.as_str())
                {
                    let reason = number_status
                        .clone()
                        .or_else(|| error_code.clone())
                        .unwrap_or_else(|| status.clone());
                    fail_invitation!(
                        tx,
                        invitation,
                        &message.contact_id,
                        &message.id,
                        &reason,
                        now
                    );
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Records a send that did not succeed; a permanent failure flags the number when it says
    /// something about it and fails the invitation (`invitation.failed`); an `unknown` outcome
    /// of a survey's first text sends the invitation (`invitation.sent`, with `outcome`
    /// `unknown`). Only a text still `queued` or `sending` takes it: one recorded sent,
    /// delivered or failed meanwhile (a status callback, another worker after a lost lease)
    /// keeps its status, and then nothing is recorded (`false`).
    pub async fn record_send_failure(
        &self,
        message: &OutgoingMessage,
        failure: &SendFailure<'_>,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                // Back in the queue, it has not gone out: the daily cap does not count it.
                "UPDATE messages SET status = $1, error_code = $2, updated_at = $3, \
                 sent_at = CASE WHEN $1 = 'queued' THEN NULL ELSE sent_at END \
                 WHERE id = $4 AND status IN ('queued', 'sending')",
            )
            .bind(failure.status)
            .bind(failure.error_code)
            .bind(now)
            .bind(&message.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            flag_number!(
                tx,
                &message.contact_id,
                failure.number_status,
                now,
                (&message.channel, &message.id)
            );
            if let (Some(invitation), "unknown") = (&message.invitation_id, failure.status) {
                // The survey's first text may well have gone out: it is taken as sent, so that
                // the customer's reply finds the survey open and its reminder and expiry follow
                // (a survey left `scheduled` waited for them forever).
                let taken = sqlx::query(
                    "UPDATE invitations SET status = 'sent', status_reason = 'outcome_unknown', \
                     updated_at = $1 WHERE id = $2 AND status IN ('scheduled', 'held')",
                )
                .bind(now)
                .bind(invitation)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if taken == 1 {
                    let mut data = invitation_sent(invitation, message);
                    data["outcome"] = json!("unknown");
                    insert_event!(tx, "invitation.sent", &message.contact_id, &data, now);
                }
            }
            if let (Some(invitation), "failed_permanent") = (&message.invitation_id, failure.status)
            {
                let reason = failure
                    .number_status
                    .or(failure.error_code)
                    .unwrap_or("refused");
                fail_invitation!(
                    tx,
                    invitation,
                    &message.contact_id,
                    &message.id,
                    reason,
                    now
                );
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Moves a message to another channel (failover); the conversation follows it when nothing
    /// else is open there, so that the customer's reply finds it.
    pub async fn reroute_message(
        &self,
        message: &OutgoingMessage,
        channel: &str,
        sender: &str,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE messages SET channel = $1, sender = $2, status = 'queued', updated_at = $3 WHERE id = $4",
            )
            .bind(channel)
            .bind(sender)
            .bind(now)
            .bind(&message.id)
            .execute(&mut *tx)
            .await?;
            if let Some(conversation) = &message.conversation_id {
                let taken: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM conversations WHERE contact_id = $1 AND channel = $2 AND sender = $3 AND status = 'open'",
                )
                .bind(&message.contact_id)
                .bind(channel)
                .bind(sender)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_none() {
                    sqlx::query("UPDATE conversations SET channel = $1, sender = $2, updated_at = $3, version = version + 1 WHERE id = $4")
                        .bind(channel)
                        .bind(sender)
                        .bind(now)
                        .bind(conversation)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Keeps a delivery status once per (message, status) and, in the same transaction, applies
    /// it to its message unless the message is further along; a permanent failure flags the
    /// number and fails the invitation. Returns false for a provider retry: nothing changes. A
    /// status that arrives before its message is recorded is kept by provider id and applied
    /// when the send is recorded.
    pub async fn record_status(&self, new: &NewStatus<'_>) -> Result<bool, StorageError> {
        let _writing = self.writing().await;
        let (lock, key) = self.status_lock(new.channel, new.provider_message_id);
        let now = new.received_at;
        let (channel, provider_message_id, status) =
            (new.channel, new.provider_message_id, new.status);
        let (error_code, number_status) = (new.error_code, new.number_status);
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).bind(&key).execute(&mut *tx).await?;
            }
            let inserted = sqlx::query(
                "INSERT INTO message_statuses (channel, provider_message_id, message_id, status, error_code, received_at, number_status) \
                 VALUES ($1, $2, (SELECT id FROM messages WHERE channel = $1 AND direction = 'outbound' AND provider_message_id = $2), \
                 $3, $4, $5, $6) ON CONFLICT (channel, provider_message_id, status) DO NOTHING",
            )
            .bind(channel)
            .bind(provider_message_id)
            .bind(status)
            .bind(error_code)
            .bind(now)
            .bind(number_status)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            let applied: Option<(String, String, Option<String>)> = sqlx::query_as(&format!(
                "UPDATE messages SET status = $1, error_code = COALESCE($2, error_code), updated_at = $3 \
                 WHERE channel = $4 AND direction = 'outbound' AND provider_message_id = $5 AND {} < $6 \
                 RETURNING id, contact_id, conversation_id",
                *STATUS_RANK_SQL
            ))
            .bind(status)
            .bind(error_code)
            .bind(now)
            .bind(channel)
            .bind(provider_message_id)
            .bind(i32::from(status_rank(status)))
            .fetch_optional(&mut *tx)
            .await?;
            if let (Some((message_id, contact_id, conversation)), "failed_permanent") =
                (&applied, status)
            {
                flag_number!(tx, contact_id, number_status, now, (channel, message_id));
                if let Some(conversation) = conversation {
                    let invitation: Option<String> =
                        sqlx::query_scalar("SELECT invitation_id FROM conversations WHERE id = $1")
                            .bind(conversation)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(invitation) = invitation {
                        let reason = number_status.or(error_code).unwrap_or("failed_permanent");
                        fail_invitation!(tx, &invitation, contact_id, message_id, reason, now);
                    }
                }
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Recording a send and recording one of its statuses must not run side by side: each would
    /// miss the other (the status finds no message with that provider id yet, the send finds no
    /// status yet) and the status would never be applied. Both lock the provider message id.
    fn status_lock(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> (Option<&'static str>, String) {
        (
            self.key_lock(),
            format!("status:{channel}:{provider_message_id}"),
        )
    }

    /// Takes or keeps the send lease of `channel` for `owner` until `until`; false when another
    /// owner holds it and it has not expired.
    pub async fn hold_channel_lease(
        &self,
        channel: &str,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let _writing = self.writing().await;
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO channel_leases (channel, owner, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (channel) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE channel_leases.owner = excluded.owner OR channel_leases.expires_at <= $4",
            )
            .bind(channel)
            .bind(owner)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await
            .map(|d| d.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// The latest messages "sent" through the given console channels, newest first.
    pub async fn console_messages(
        &self,
        channels: &[String],
        to: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConsoleMessage>, StorageError> {
        let mut all = Vec::new();
        for channel in channels {
            let rows: Vec<ConsoleMessage> = on_pool!(self, |pool| {
                sqlx::query_as(
                    "SELECT m.id, m.channel, m.sender, ct.phone AS \"to\", m.body, m.status, m.purpose, m.segments, m.created_at \
                     FROM messages m JOIN contacts ct ON ct.id = m.contact_id \
                     WHERE m.channel = $1 AND m.direction = 'outbound' AND (CAST($2 AS TEXT) IS NULL OR ct.phone = $2) \
                     ORDER BY m.created_at DESC, m.id DESC LIMIT $3",
                )
                .bind(channel)
                .bind(to)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
            })?;
            all.extend(rows);
        }
        all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        all.truncate(limit as usize);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::status_rank;

    #[test]
    fn a_status_never_moves_backwards() {
        let order = ["queued", "sending", "sent", "failed_temporary", "delivered"];
        for pair in order.windows(2) {
            assert!(status_rank(pair[0]) < status_rank(pair[1]), "{pair:?}");
        }
        assert_eq!(status_rank("delivered"), status_rank("failed_permanent"));
        assert_eq!(status_rank("unknown"), status_rank("sending"));
    }
}
