//! One customer: their card (everything known about them), their erasure, and retention.
//!
//! Erasure keeps what the aggregates need (answers' scores, choices and kinds, statuses, costs,
//! dates) and removes or overwrites everything that identifies the customer or that they wrote:
//! the number, texts in both directions (outgoing texts hold names from variables), free-text
//! answers, invitation variables, conversation states (which hold both), case and job details,
//! undelivered and delivered events. A number that had opted out is kept only as its keyed hash
//! in `blocked_numbers` (see [`crate::privacy`]). docs/privacy.md lists every column.

use super::audit::insert_audit;
use super::intake::ERASED_PAYLOAD_HASH;
use super::{
    Actor, AuditEntry, Backend, BeginWrite, CASE_CLOSE_JOB, CASE_NOTICE_JOB, CASE_SLA_JOB,
    CaseEventRecord, ConsentRecord, EXPIRE_JOB, OPEN_JOB, REMIND_JOB, SEND_JOB, Storage,
    StorageError, insert_event, on_pool,
};
use crate::phone::Phone;
use crate::time::Timestamp;
use serde_json::{Value, json};
use sqlx::types::Json;
use std::collections::HashMap;

/// What a contact's row says.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContactSummary {
    pub id: String,
    pub phone: String,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    pub number_status: String,
    pub opted_out_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CardInvitation {
    pub id: String,
    pub source: String,
    pub event_id: String,
    pub flow_id: String,
    pub unit_code: Option<String>,
    pub channel: Option<String>,
    pub locale: Option<String>,
    pub variables: Json<Value>,
    pub status: String,
    pub status_reason: Option<String>,
    pub send_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CardMessage {
    pub id: String,
    pub conversation_id: Option<String>,
    pub case_id: Option<String>,
    pub direction: String,
    pub channel: String,
    pub body: String,
    pub status: String,
    pub purpose: Option<String>,
    pub error_code: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CardAnswer {
    pub conversation_id: String,
    pub question_id: String,
    pub kind: String,
    pub score: Option<i32>,
    pub choice: Option<String>,
    pub text: Option<String>,
    pub message_id: Option<String>,
    pub answered_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConversationRow {
    pub id: String,
    pub invitation_id: String,
    pub flow_id: String,
    pub channel: String,
    pub sender: String,
    pub status: String,
    pub started_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CardConversation {
    pub conversation: ConversationRow,
    /// Both directions, oldest first.
    pub messages: Vec<CardMessage>,
    pub answers: Vec<CardAnswer>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CaseRow {
    pub id: String,
    pub status: String,
    pub outcome: Option<String>,
    pub priority: String,
    pub rule_id: String,
    pub conversation_id: Option<String>,
    pub opened_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CardCase {
    pub case: CaseRow,
    pub events: Vec<CaseEventRecord>,
}

/// Everything known about one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactCard {
    pub contact: ContactSummary,
    pub consents: Vec<ConsentRecord>,
    pub invitations: Vec<CardInvitation>,
    pub conversations: Vec<CardConversation>,
    /// Texts outside any survey (keywords and their answers, case threads), oldest first.
    pub other_messages: Vec<CardMessage>,
    pub cases: Vec<CardCase>,
}

/// What a retention run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub messages_emptied: u64,
    pub answers_emptied: u64,
    pub invitations_emptied: u64,
    pub contacts_anonymised: u64,
}

/// Contacts anonymised per statement by a retention run: each is one erasure transaction.
const RETENTION_BATCH: i64 = 500;

/// A contact `c` with nothing since `$1`: no text, no invitation change or invitation to come,
/// no open survey, no case still open or changed since, no consent change. The retention run
/// erases such contacts; it asks again under the contact's lock, right before erasing one.
const IDLE_SINCE: &str = "c.erased_at IS NULL AND c.created_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.contact_id = c.id AND m.created_at >= $1) \
     AND NOT EXISTS (SELECT 1 FROM invitations i WHERE i.contact_id = c.id \
         AND (i.updated_at >= $1 OR i.status IN ('scheduled', 'held'))) \
     AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.contact_id = c.id AND v.status = 'open') \
     AND NOT EXISTS (SELECT 1 FROM cases k WHERE k.contact_id = c.id \
         AND (k.status <> 'closed' OR k.updated_at >= $1)) \
     AND NOT EXISTS (SELECT 1 FROM contact_consents h WHERE h.contact_id = c.id AND h.at >= $1)";

/// Marks as opted out the contacts a statement has just created for blocked numbers, with a
/// history row, and returns their ids. `$created` lists `(id, phone, created_at, at)`: a row
/// whose `created_at` is the `at` it was inserted with is new (callers that know which contacts
/// they created pass those alone, with `created_at` = `at`). Checked after the upsert, not
/// before, so that on PostgreSQL a contact created while the same number's erasure commits still
/// sees the number blocked (the upsert waited for the erasure's row lock).
macro_rules! block_new_contacts {
    ($tx:expr, $storage:expr, $created:expr) => {{
        let created: &[(
            String,
            String,
            $crate::time::Timestamp,
            $crate::time::Timestamp,
        )] = $created;
        let mut blocked: Vec<(String, $crate::time::Timestamp)> = Vec::new();
        let new: Vec<&(
            String,
            String,
            $crate::time::Timestamp,
            $crate::time::Timestamp,
        )> = created
            .iter()
            .filter(|(_, _, created_at, at)| created_at == at)
            .collect();
        if let (Some(key), false) = ($storage.privacy_key.as_deref(), new.is_empty()) {
            let hmacs: Vec<Vec<u8>> = new
                .iter()
                .map(|(_, phone, ..)| key.phone_hmac(phone).to_vec())
                .collect();
            let mut select = sqlx::QueryBuilder::new(
                "SELECT phone_hmac FROM blocked_numbers WHERE phone_hmac IN (",
            );
            let mut list = select.separated(", ");
            for hmac in &hmacs {
                list.push_bind(hmac.clone());
            }
            select.push(")");
            let kept = $crate::storage::kept(&$tx);
            let found: Vec<Vec<u8>> = select
                .build_query_scalar()
                .persistent(kept)
                .fetch_all(&mut *$tx)
                .await?;
            for ((id, _, _, at), hmac) in new.iter().zip(&hmacs) {
                if found.contains(hmac) {
                    blocked.push((id.clone(), *at));
                }
            }
            for (id, at) in &blocked {
                sqlx::query("UPDATE contacts SET opted_out_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(*at)
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO contact_consents (contact_id, change, source, at) \
                     VALUES ($1, 'opted_out', 'blocked_number', $2)",
                )
                .bind(id)
                .bind(*at)
                .execute(&mut *$tx)
                .await?;
            }
        }
        blocked
            .into_iter()
            .map(|(id, _)| id)
            .collect::<std::collections::HashSet<String>>()
    }};
}
pub(crate) use block_new_contacts;

/// Purges what was pushed, or is waiting to be pushed, about a contact: its events in the
/// outbox (their payloads hold its number, texts and answers). Part of the erasure's
/// transaction, before its `contact.erased` event is written: the attempts and deliveries of its
/// events first (they refer to the outbox rows), then the events. A delivery job already queued
/// finds nothing and ends.
macro_rules! purge_contact_deliveries {
    ($tx:expr, $contact_id:expr) => {{
        let contact_id: &str = $contact_id;
        for statement in [
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE contact_id = $1)",
            "DELETE FROM webhook_deliveries WHERE contact_id = $1",
            "DELETE FROM outbox WHERE contact_id = $1",
        ] {
            sqlx::query(statement)
                .bind(contact_id)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

impl Storage {
    /// Everything known about the customer with this number; `None` for an unknown or erased one.
    pub async fn contact_card(&self, phone: &Phone) -> Result<Option<ContactCard>, StorageError> {
        Ok(on_pool!(self, |pool| {
            let contact: Option<ContactSummary> = sqlx::query_as(
                "SELECT id, phone, locale, time_zone, number_status, opted_out_at, created_at \
                 FROM contacts WHERE phone = $1 AND erased_at IS NULL",
            )
            .bind(phone.as_e164())
            .fetch_optional(pool)
            .await?;
            let Some(contact) = contact else {
                return Ok(None);
            };
            let id = contact.id.as_str();
            let consents: Vec<ConsentRecord> = sqlx::query_as(
                "SELECT change, source, at FROM contact_consents WHERE contact_id = $1 ORDER BY at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let invitations: Vec<CardInvitation> = sqlx::query_as(
                "SELECT i.id, i.source, i.event_id, i.flow_id, u.code AS unit_code, i.channel, i.locale, \
                 i.variables, i.status, i.status_reason, i.send_at, i.created_at \
                 FROM invitations i LEFT JOIN units u ON u.id = i.unit_id \
                 WHERE i.contact_id = $1 ORDER BY i.created_at, i.id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let conversations: Vec<ConversationRow> = sqlx::query_as(
                "SELECT id, invitation_id, flow_id, channel, sender, status, started_at, closed_at \
                 FROM conversations WHERE contact_id = $1 ORDER BY started_at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let messages: Vec<CardMessage> = sqlx::query_as(
                "SELECT id, conversation_id, case_id, direction, channel, body, status, purpose, \
                 error_code, created_at FROM messages WHERE contact_id = $1 ORDER BY created_at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let answers: Vec<CardAnswer> = sqlx::query_as(
                "SELECT a.conversation_id, a.question_id, a.kind, a.score, a.choice, a.text, \
                 a.message_id, a.answered_at FROM answers a \
                 JOIN conversations c ON c.id = a.conversation_id \
                 WHERE c.contact_id = $1 ORDER BY a.answered_at, a.id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let cases: Vec<CaseRow> = sqlx::query_as(
                "SELECT id, status, outcome, priority, rule_id, conversation_id, opened_at, closed_at \
                 FROM cases WHERE contact_id = $1 ORDER BY opened_at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let mut case_events: HashMap<String, Vec<CaseEventRecord>> = HashMap::new();
            let rows: Vec<(String, CaseEventRecord)> = sqlx::query_as::<_, CaseEventWithCase>(
                "SELECT e.case_id, e.id, e.at, e.actor, e.kind, e.message_id, e.details \
                 FROM case_events e JOIN cases k ON k.id = e.case_id \
                 WHERE k.contact_id = $1 ORDER BY e.id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.case_id.clone(), r.into_record()))
            .collect();
            for (case_id, event) in rows {
                case_events.entry(case_id).or_default().push(event);
            }
            Ok::<_, sqlx::Error>(Some(assemble(
                contact,
                consents,
                invitations,
                (conversations, messages, answers),
                cases,
                case_events,
            )))
        })?)
    }

    /// Erases the customer with this number (see the module doc), in one transaction, with its
    /// `contact.erased` event and audit entry; returns the contact's id and whether its number
    /// stays blocked (it had opted out). `NotFound` for a number that is unknown or already
    /// erased.
    pub async fn erase_contact(
        &self,
        phone: &Phone,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(String, bool), StorageError> {
        let erased = self
            .erase_where("phone", phone.as_e164(), (actor, None), now)
            .await?
            .ok_or(StorageError::NotFound("contact"))?;
        self.truncate_wal().await;
        Ok(erased)
    }

    /// The retention run: texts, free-text answers, variables, events' data, CRM answers,
    /// closed cases' alert reasons, dead jobs and import reports' words from before `before`
    /// are emptied or deleted, and contacts with no activity since then are erased as
    /// [`Storage::erase_contact`] would (actor `system`). Texts still to be sent, the variables
    /// of a survey still running and events still on their way are kept until done with.
    pub async fn apply_retention(
        &self,
        before: Timestamp,
        now: Timestamp,
    ) -> Result<Retention, StorageError> {
        let mut retention = Retention::default();
        {
            let _writing = self.writing().await;
            on_pool!(self, |pool| {
                let mut tx = pool.begin_write().await?;
                retention.messages_emptied = sqlx::query(
                    "UPDATE messages SET body = '' WHERE created_at < $1 AND body <> '' \
                     AND status NOT IN ('queued', 'sending')",
                )
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                retention.answers_emptied = sqlx::query(
                    "UPDATE answers SET text = NULL WHERE answered_at < $1 AND text IS NOT NULL",
                )
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // A running survey's state holds the variables and answers too: it is emptied
                // with them once the survey is over.
                retention.invitations_emptied = sqlx::query(
                    "UPDATE invitations SET variables = '{}' WHERE created_at < $1 \
                     AND status NOT IN ('scheduled', 'held') AND variables <> '{}' \
                     AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.invitation_id = invitations.id \
                     AND c.status = 'open')",
                )
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query(
                    "UPDATE conversations SET state = '{}' WHERE status <> 'open' AND closed_at < $1",
                )
                .bind(before)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM message_parts WHERE received_at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                for statement in [
                    // Events quote answers, texts and numbers: once handed out, with no
                    // delivery still on its way, their data goes.
                    "UPDATE outbox SET payload = '{}' WHERE occurred_at < $1 AND dispatched \
                     AND payload <> '{}' AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                     WHERE d.event_seq = outbox.seq AND d.state = 'pending')",
                    // A CRM's answer, kept with an attempt, may echo what it was sent.
                    "DELETE FROM webhook_attempts WHERE attempted_at < $1",
                    "UPDATE webhook_deliveries SET last_error = NULL WHERE updated_at < $1 \
                     AND state <> 'pending' AND last_error IS NOT NULL",
                    // Alert reasons quote the customer's words; a case still open keeps them.
                    "UPDATE case_events SET details = '{}' WHERE details <> '{}' AND case_id IN \
                     (SELECT id FROM cases WHERE status = 'closed' AND closed_at < $1)",
                    // A job that died keeps its payload (a notice's reasons) until then.
                    "DELETE FROM jobs WHERE state = 'dead' AND finished_at < $1",
                    // An import's report may quote what a row held: its reason codes stay.
                    "UPDATE import_rejections SET message = reason WHERE message <> reason \
                     AND import_id IN (SELECT id FROM imports WHERE created_at < $1)",
                ] {
                    sqlx::query(statement)
                        .bind(before)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(())
            })?;
        }
        loop {
            let idle: Vec<String> = on_pool!(self, |pool| {
                sqlx::query_scalar(&format!(
                    "SELECT c.id FROM contacts c WHERE {IDLE_SINCE} ORDER BY c.id LIMIT $2"
                ))
                .bind(before)
                .bind(RETENTION_BATCH)
                .fetch_all(pool)
                .await
            })?;
            for id in &idle {
                if self
                    .erase_where("id", id, (&Actor::System, Some(before)), now)
                    .await?
                    .is_some()
                {
                    retention.contacts_anonymised += 1;
                }
            }
            if (idle.len() as i64) < RETENTION_BATCH {
                break;
            }
        }
        self.truncate_wal().await;
        Ok(retention)
    }

    /// Erases the contact whose `column` (`phone` or `id`) is `value`, unless it is erased
    /// already, or (`idle_since`, for the retention run) active since then: then `None`.
    /// Returns its id and whether its number stays blocked.
    async fn erase_where(
        &self,
        column: &'static str,
        value: &str,
        (actor, idle_since): (&Actor, Option<Timestamp>),
        now: Timestamp,
    ) -> Result<Option<(String, bool)>, StorageError> {
        let key = self.privacy_key.clone().ok_or_else(|| {
            StorageError::Corrupt(
                "erasure needs the privacy key ([privacy] hash_key or its key file)".into(),
            )
        })?;
        let (lock, case_id_of_job) = match &self.backend {
            Backend::Sqlite(_) => ("", "json_extract(payload, '$.case_id')"),
            Backend::Postgres(_) => (" FOR UPDATE", "(payload->>'case_id')"),
        };
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let found: Option<(String, String, Option<Timestamp>)> = sqlx::query_as(&format!(
                "SELECT id, phone, opted_out_at FROM contacts WHERE {column} = $1 AND erased_at IS NULL{lock}"
            ))
            .bind(value)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((id, phone, opted_out_at)) = found else {
                return Ok(None);
            };
            if let Some(since) = idle_since {
                // Found idle before its lock was taken: a text or an invitation committed
                // meanwhile keeps the customer.
                let still_idle: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT c.id FROM contacts c WHERE c.id = $2 AND {IDLE_SINCE}"
                ))
                .bind(since)
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?;
                if still_idle.is_none() {
                    return Ok(None);
                }
            }
            let id = id.as_str();
            let hmac = key.phone_hmac(&phone).to_vec();
            if opted_out_at.is_some() {
                sqlx::query(
                    "INSERT INTO blocked_numbers (phone_hmac, blocked_at) VALUES ($1, $2) \
                     ON CONFLICT (phone_hmac) DO NOTHING",
                )
                .bind(&hmac)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            } else {
                // Blocked once, then opted in again by texting START: the customer's latest
                // wish stands.
                sqlx::query("DELETE FROM blocked_numbers WHERE phone_hmac = $1")
                    .bind(&hmac)
                    .execute(&mut *tx)
                    .await?;
            }
            // A job's unique key is `<kind>:<subject>` (`WriteSet::job`): the jobs of the
            // contact's messages and conversations are found through its index. A case's jobs
            // have several keys each; they are found by their payload, a scan of the jobs
            // table, for the few contacts that had a case.
            sqlx::query(&format!(
                "DELETE FROM jobs WHERE state <> 'running' AND unique_key IN ( \
                 SELECT '{SEND_JOB}:' || id FROM messages WHERE contact_id = $1 \
                 UNION ALL SELECT '{EXPIRE_JOB}:' || id FROM conversations WHERE contact_id = $1 \
                 UNION ALL SELECT '{REMIND_JOB}:' || id FROM conversations WHERE contact_id = $1 \
                 UNION ALL SELECT '{OPEN_JOB}:' || id FROM invitations WHERE contact_id = $1)"
            ))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let had_case: Option<String> =
                sqlx::query_scalar("SELECT id FROM cases WHERE contact_id = $1 LIMIT 1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if had_case.is_some() {
                sqlx::query(&format!(
                    "DELETE FROM jobs WHERE state <> 'running' \
                     AND kind IN ('{CASE_NOTICE_JOB}', '{CASE_SLA_JOB}', '{CASE_CLOSE_JOB}') \
                     AND {case_id_of_job} IN (SELECT id FROM cases WHERE contact_id = $1)"
                ))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            // Every text of its conversations and cases carries the contact too. One still
            // queued is never sent: a send job already running (its job is not deleted above)
            // finds it failed and sends nothing.
            sqlx::query(
                "UPDATE messages SET body = '', \
                 error_code = CASE WHEN status = 'queued' THEN 'erased' ELSE error_code END, \
                 status = CASE WHEN status = 'queued' THEN 'failed_permanent' ELSE status END \
                 WHERE contact_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // A long text still in parts is known by the customer's number only.
            sqlx::query("DELETE FROM message_parts WHERE sender = $1")
                .bind(&phone)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE answers SET text = NULL \
                 WHERE conversation_id IN (SELECT id FROM conversations WHERE contact_id = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // A survey still running ends here: nothing may be texted to a number we no longer
            // know; its version moves so that a step computed meanwhile is refused.
            sqlx::query(
                "UPDATE conversations SET state = '{}', version = version + 1, updated_at = $2, \
                 status = CASE WHEN status = 'open' THEN 'expired' ELSE status END, \
                 closed_at = COALESCE(closed_at, $2) WHERE contact_id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // The request's hash goes too: unkeyed, it would give the number back to whoever
            // hashes every mobile number with the event's other fields, which are kept.
            sqlx::query(
                "UPDATE invitations SET variables = '{}', payload_hash = $3, updated_at = $2, \
                 status = CASE WHEN status IN ('scheduled', 'held') THEN 'cancelled' ELSE status END, \
                 status_reason = CASE WHEN status IN ('scheduled', 'held') THEN 'contact_erased' ELSE status_reason END \
                 WHERE contact_id = $1",
            )
            .bind(id)
            .bind(now)
            .bind(ERASED_PAYLOAD_HASH)
            .execute(&mut *tx)
            .await?;
            // An import's report said why a row of this customer was declined, in words that
            // may quote what was sent; its reason code stays.
            sqlx::query(
                "UPDATE import_rejections SET message = reason \
                 WHERE invitation_id IN (SELECT id FROM invitations WHERE contact_id = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // Case details hold alert reasons, which quote the customer's words.
            sqlx::query(
                "UPDATE case_events SET details = '{}' \
                 WHERE case_id IN (SELECT id FROM cases WHERE contact_id = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let open_cases: Vec<String> = sqlx::query_scalar(
                "UPDATE cases SET status = 'closed', outcome = COALESCE(outcome, 'no_action_needed'), \
                 closed_at = $2, updated_at = $2 WHERE contact_id = $1 AND status <> 'closed' RETURNING id",
            )
            .bind(id)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for case_id in &open_cases {
                sqlx::query(
                    "INSERT INTO case_events (case_id, at, actor, kind, details) \
                     VALUES ($1, $2, 'system', 'closed', $3)",
                )
                .bind(case_id)
                .bind(now)
                .bind(Json(json!({ "contact_erased": true })))
                .execute(&mut *tx)
                .await?;
            }
            purge_contact_deliveries!(tx, id);
            sqlx::query(
                "UPDATE contacts SET phone = '+erased-' || id, locale = NULL, time_zone = NULL, \
                 erased_at = $2, updated_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_event!(
                tx,
                "contact.erased",
                id,
                &json!({ "contact": { "id": id } }),
                now
            );
            insert_audit!(
                &mut *tx,
                &AuditEntry {
                    at: now,
                    actor: actor.to_string(),
                    action: "contact.erased".into(),
                    target_type: "contact".into(),
                    target_id: Some(id.to_string()),
                    details: json!({}),
                }
            )?;
            let id = id.to_string();
            tx.commit().await?;
            Ok::<_, StorageError>(Some((id, opted_out_at.is_some())))
        })
    }

    /// After an erasure, SQLite's write-ahead log still holds the pages as they were before it,
    /// texts included: a checkpoint that truncates the log moves them out of it (and
    /// `secure_delete` has zeroed them in the main file). Best effort: a reader in the middle of
    /// a long query can keep the log from being truncated; the next checkpoint does it.
    async fn truncate_wal(&self) {
        if let Backend::Sqlite(pool) = &self.backend {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
            {
                tracing::warn!(error = %e, "could not truncate the SQLite write-ahead log after an erasure");
            }
        }
    }
}

#[derive(sqlx::FromRow)]
struct CaseEventWithCase {
    case_id: String,
    id: i64,
    at: Timestamp,
    actor: String,
    kind: String,
    message_id: Option<String>,
    details: Json<Value>,
}

impl CaseEventWithCase {
    fn into_record(self) -> CaseEventRecord {
        CaseEventRecord {
            id: self.id,
            at: self.at,
            actor: self.actor,
            kind: self.kind,
            message_id: self.message_id,
            details: self.details,
        }
    }
}

/// Puts each message and answer under its conversation, and each event under its case.
fn assemble(
    contact: ContactSummary,
    consents: Vec<ConsentRecord>,
    invitations: Vec<CardInvitation>,
    (conversations, messages, answers): (Vec<ConversationRow>, Vec<CardMessage>, Vec<CardAnswer>),
    cases: Vec<CaseRow>,
    mut case_events: HashMap<String, Vec<CaseEventRecord>>,
) -> ContactCard {
    let mut by_conversation: HashMap<String, CardConversation> = conversations
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                CardConversation {
                    conversation: c.clone(),
                    messages: Vec::new(),
                    answers: Vec::new(),
                },
            )
        })
        .collect();
    let mut other_messages = Vec::new();
    for message in messages {
        match message
            .conversation_id
            .as_ref()
            .and_then(|id| by_conversation.get_mut(id))
        {
            Some(conversation) => conversation.messages.push(message),
            None => other_messages.push(message),
        }
    }
    for answer in answers {
        if let Some(conversation) = by_conversation.get_mut(&answer.conversation_id) {
            conversation.answers.push(answer);
        }
    }
    ContactCard {
        contact,
        consents,
        invitations,
        conversations: conversations
            .iter()
            .filter_map(|c| by_conversation.remove(&c.id))
            .collect(),
        other_messages,
        cases: cases
            .into_iter()
            .map(|case| CardCase {
                events: case_events.remove(&case.id).unwrap_or_default(),
                case,
            })
            .collect(),
    }
}
